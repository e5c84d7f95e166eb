"""The Helm chart, rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK; no cluster):
valid Kubernetes objects, the CRDs taken from crds/, least-privilege RBAC that is enough for the
operator (it runs a whole flow as the chart's ServiceAccount), HA settings, and a hardened pod."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.settings import Config
from tests.harness.cluster import ROOT

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CHART = ROOT / "helm" / "gantry"
KUBERNETES_VERSION = "1.30.0"


def render(values: dict[str, Any] | None = None, namespace: str = "gantry") -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values or {}, name="gantry", namespace=namespace)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_charts_crds_are_the_repositorys_crds_not_a_copy() -> None:
    assert (CHART / "crds").is_symlink() and (CHART / "crds").resolve() == (ROOT / "crds").resolve()
    with helm.Chart.load(str(CHART)) as chart:
        packaged = {Path(c["name"]).name: c["data"] for c in chart.crds}
    on_disk = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    # Gantry's six kinds and Kopf's two peering kinds: Helm creates crds/ before any template.
    assert packaged.keys() == on_disk.keys() and len(on_disk) == 8
    for name, text in on_disk.items():
        assert packaged[name] == text, name


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "rbac": {"workloadNamespaces": ["shop-staging", "shop-prod"]},
            "operator": {"watchNamespaces": ["gantry"]},
        },
        {"peering": {"enabled": False}, "replicaCount": 1, "metrics": {"serviceMonitor": {"enabled": True}}},
        {
            "image": {"digest": "sha256:" + "a" * 64},
            "operator": {"prometheusUrl": "http://prometheus:9090"},
            "webhooks": {"enabled": True},
        },
    ],
    ids=["defaults", "scoped", "single-replica", "pinned-image"],
)
def test_every_rendered_object_is_valid(values: dict[str, Any]) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith(("kopf.dev/", "monitoring.coreos.com/")):
            assert doc["metadata"]["name"] and ("spec" in doc or doc["kind"].endswith("KopfPeering"))
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_default_install_is_two_peered_replicas_of_a_hardened_non_root_pod() -> None:
    docs = render()
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert deployment["spec"]["replicas"] == 2 and env["GANTRY_PEERING"] == "gantry"
    assert by_kind(docs, "ClusterKopfPeering")[0]["metadata"]["name"] == "gantry"
    assert not by_kind(docs, "CustomResourceDefinition")  # all in crds/, so Helm makes them first
    # Nothing publishes the image: the default is one loaded into kind, a name no registry serves.
    assert container["image"] == "localhost/gantry:0.1.0"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/var/cache/gantry/git"}
    assert container["args"][0] == "run" and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert by_kind(docs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
    assert by_kind(docs, "Service")[0]["spec"]["ports"][0]["port"] == 8080
    assert not by_kind(docs, "ServiceMonitor")


def test_push_webhooks_are_a_port_and_a_service_when_enabled() -> None:
    assert not [s for s in by_kind(render(), "Service") if s["metadata"]["name"].endswith("-webhooks")]
    docs = render({"webhooks": {"enabled": True}})
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-webhooks")]
    assert service["spec"]["ports"][0] == {
        "name": "webhooks",
        "port": 80,
        "targetPort": "webhooks",
        "protocol": "TCP",
    }
    (container,) = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    assert {"name": "GANTRY_WEBHOOK_PORT", "value": "8443"} in container["env"]
    assert {"name": "webhooks", "containerPort": 8443, "protocol": "TCP"} in container["ports"]


def test_the_notes_say_when_the_image_is_not_pinned_by_digest() -> None:
    def notes(values: dict[str, Any]) -> str:
        with helm.Chart.load(str(CHART)) as chart:
            return str(chart.render(values, name="gantry", namespace="gantry")["gantry/templates/NOTES.txt"])

    assert "a tag, not a digest" in notes({}) and "--set image.digest=sha256:" in notes({})
    assert "a tag, not a digest" not in notes({"image": {"digest": "sha256:" + "c" * 64}})


def test_user_values_reach_the_pod() -> None:
    values = {
        "image": {"repository": "registry.local/gantry", "digest": "sha256:" + "b" * 64},
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}},
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "operator": {"watchNamespaces": ["team-a", "team-b"], "prometheusUrl": "http://prom:9090"},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}}},
    }
    docs = render(values)
    spec = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == "registry.local/gantry@sha256:" + "b" * 64
    assert container["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}
    assert spec["nodeSelector"] == {"pool": "system"} and spec["tolerations"][0]["key"] == "dedicated"
    assert spec["affinity"] == {"nodeAffinity": {}}
    assert container["args"] == ["run", "--namespace=team-a", "--namespace=team-b"]
    assert {"name": "GANTRY_PROMETHEUS_URL", "value": "http://prom:9090"} in container["env"]
    assert [p["metadata"]["namespace"] for p in by_kind(docs, "KopfPeering")] == ["team-a", "team-b"]
    assert by_kind(docs, "ServiceMonitor")[0]["metadata"]["labels"]["release"] == "kube-prometheus"


def test_the_operator_settings_in_values_are_the_ones_the_operator_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {
        "reconcileInterval": 7,
        "waitingInterval": 11,
        "waitingResync": 301,
        "lockSweepInterval": 31,
        "workers": 3,
        "apiTimeout": 9,
        "prometheusUrl": "http://prom:9090",
        "alertmanagerUrl": "http://am:9093",
    }
    docs = render({"operator": settings, "peering": {"lifetime": 45}})
    (container,) = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    for item in container["env"]:
        monkeypatch.setenv(item["name"], item["value"])
    config = Config.from_env()
    assert (config.reconcile_interval, config.waiting_interval, config.waiting_resync) == (7, 11, 301)
    assert (config.lock_sweep_interval, config.workers, config.api_timeout) == (31, 3, 9)
    assert (config.prometheus_url, config.alertmanager_url) == ("http://prom:9090", "http://am:9093")
    assert (config.peering, config.peering_lifetime, config.metrics_port) == ("gantry", 45, 8080)
    assert config.metrics_address == "0.0.0.0"
    assert config.liveness == "http://0.0.0.0:8081/healthz" and config.git_cache


def test_workload_permissions_are_limited_to_the_listed_namespaces() -> None:
    docs = render(
        {"rbac": {"workloadNamespaces": ["shop-staging", "shop-prod"], "pipelineNamespaces": ["teams"]}}
    )
    (cluster_role,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "gantry"]
    cluster_wide = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert not cluster_wide & {"deployments", "statefulsets", "jobs", "secrets"}
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(docs, "Role")}
    assert roles == {
        ("shop-staging", "gantry-workloads"),
        ("shop-prod", "gantry-workloads"),
        ("teams", "gantry-pipeline-secrets"),
    }
    (container,) = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["GANTRY_WATCH_WORKLOADS"] == "false"  # a cluster-wide watch on them would be refused
    for role in by_kind(docs, "Role"):
        for rule in role["rules"]:
            # delete only on Jobs: Gantry stops test Jobs nobody waits for any more (issue 16)
            assert "*" not in rule["verbs"] and (
                "delete" not in rule["verbs"] or rule["resources"] == ["jobs"]
            )


def test_ephemeral_environments_add_namespace_rights_only_when_enabled() -> None:
    def rights(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        (role,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "gantry"]
        return {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}

    assert not rights(render()) & {("namespaces", "create"), ("namespaces", "delete")}
    granted = rights(render({"ephemeral": {"enabled": True}}))
    wanted = {
        ("namespaces", "create"),
        ("namespaces", "delete"),
        ("deployments", "create"),
        ("pipelines", "delete"),
    }
    assert wanted <= granted
    with pytest.raises(Exception, match=r"ephemeral\.enabled: an ephemeral environment is a namespace"):
        render({"ephemeral": {"enabled": True}, "rbac": {"workloadNamespaces": ["shop-dev"]}})


def test_several_replicas_without_peering_are_refused_at_render_time() -> None:
    with pytest.raises(Exception, match=r"needs peering\.enabled"):
        render({"peering": {"enabled": False}, "replicaCount": 2})


def test_helm_lint_strict_finds_nothing() -> None:
    result = helm.lint(str(CHART), strict=True)
    # Helm's severities: 1 info (e.g. "icon is recommended"), 2 warning, 4 error.
    problems = [m for m in result["messages"] if m["severity"] > 1]
    assert result["total_charts_linted"] == 1 and result["errors"] == [] and problems == [], result


@pytest.fixture
def chart_rbac_cluster(fresh_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An API server enforcing RBAC, with only the chart's ServiceAccount and roles: a fresh one, so
    that no other test's grants (examples/rbac.yaml's, cluster-wide) can lend the operator a right."""
    from tests.conftest import FAST
    from tests.e2e import manifests as m
    from tests.harness.cluster import install_crds
    from tests.harness.operator import OperatorThread, RecordingAlerter

    cluster = fresh_cluster
    install_crds(cluster)
    docs = render({"rbac": {"workloadNamespaces": ["shop-staging", "shop-prod"]}})
    for doc in docs:
        if doc["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            cluster.apply(doc)
    for workload in m.workloads("shop-staging") + m.workloads("shop-prod") + m.workloads("elsewhere"):
        cluster.apply(workload)
    monkeypatch.setenv("KUBECONFIG", str(cluster.as_user("operator", tmp_path).kubeconfig))
    # As the chart's scoped install sets it (GANTRY_WATCH_WORKLOADS=false): no cluster-wide watch.
    operator = OperatorThread(replace(FAST, watch_workloads=False), RecordingAlerter()).start()
    yield cluster
    operator.stop()


@pytest.mark.e2e
def test_the_chart_grants_the_operator_enough_for_a_whole_flow_and_no_more(chart_rbac_cluster: Any) -> None:
    from tests.e2e import manifests as m

    cluster = chart_rbac_cluster
    pipeline = m.pipeline("gantry", app_namespace="shop-staging")
    pipeline["spec"]["stages"][1].update(
        promotion="Auto",
        targets=[{"namespace": "shop-prod", "name": "web"}, {"namespace": "shop-prod", "name": "worker"}],
    )
    cluster.apply(pipeline)
    cluster.apply(m.release("gantry", "shop-v1", "v1"))
    released = cluster.wait_for_phase("gantry", "shop-v1", "Released", "Failed", "Blocked", timeout=60)
    assert released["status"]["phase"] == "Released", released["status"]["message"]
    assert cluster.images("Deployment", "shop-prod", "web")["web"] == m.image("web", "v1")

    outside = m.pipeline("gantry", name="elsewhere", app_namespace="elsewhere")
    outside["spec"]["application"] = "shop"
    cluster.apply(outside)
    body = m.release("gantry", "shop-v2", "v2", version="v1.1.0", pipeline_name="elsewhere")
    cluster.apply(body)
    refused = cluster.wait_for_phase("gantry", "shop-v2", "Failed", "Blocked", "Verified", timeout=60)
    assert refused["status"]["phase"] != "Verified"  # no permission outside the listed namespaces
    assert cluster.images("Deployment", "elsewhere", "web")["web"] == m.OLD_WEB


def test_the_dockerfile_runs_as_the_non_root_user_the_chart_expects() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile.split("\nFROM ")[-1]  # the runtime stage
    user = next(line.split()[1] for line in final.splitlines() if line.startswith("USER "))
    uid = int(user.split(":")[0])
    pod = by_kind(render(), "Deployment")[0]["spec"]["template"]["spec"]
    assert uid != 0 and uid == pod["securityContext"]["runAsUser"]
    assert 'ENTRYPOINT ["gantry"]' in final and "git" in final  # GitPython needs the git binary
    assert "HOME=/tmp" in final  # the chart mounts /tmp; the root filesystem is read-only


# --- helm install, as Helm does it, on a fresh (emulated) cluster ---------------------------------


def chart_files(values: dict[str, Any] | None = None, chart: Path = CHART) -> tuple[list[str], list[str]]:
    """(the texts of the chart's crds/ files, its rendered templates), as `helm install` gets them."""
    with helm.Chart.load(str(chart)) as loaded:
        crds = [c["data"] for c in loaded.crds]
        files = loaded.render(values or {}, name="gantry", namespace="gantry")
    return crds, [text for path, text in sorted(files.items()) if path.endswith(".yaml")]


@pytest.fixture
def fresh_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An API server with nothing installed, not even crds/: what `helm install` meets first (on the
    envtest tier a kube-apiserver of its own)."""
    from tests.harness.cluster import fresh_cluster_for_tests

    with fresh_cluster_for_tests(tmp_path) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        yield cluster


def test_the_install_check_fails_as_helm_does_when_a_template_uses_a_kind_its_templates_define(
    fresh_cluster: Any, tmp_path: Path
) -> None:
    """The failure the chart once had (helm/helm#9395): a CRD among the templates and an object of
    its kind beside it. Helm maps every object before creating any, so the install stops; with
    the CRD in crds/ it goes through."""
    from tests.harness.helm_install import InstallFailed, install

    cluster = fresh_cluster
    crd = yaml.safe_load((ROOT / "crds" / "kopf.dev_clusterkopfpeerings.yaml").read_text())
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "gantry"}}
    for layout in ("templates", "crds"):
        chart = tmp_path / layout / "broken"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
        (chart / "templates" / "peering.yaml").write_text(yaml.safe_dump(peering))
        (chart / layout).mkdir(exist_ok=True)
        (chart / layout / "crd.yaml").write_text(yaml.safe_dump(crd))
        crds, manifests = chart_files(chart=chart)
        if layout == "templates":
            with pytest.raises(
                InstallFailed, match=r'no matches for kind "ClusterKopfPeering" in version "kopf\.dev/v1"'
            ):
                install(cluster, crds, manifests, "gantry")
            assert cluster.get("ClusterKopfPeering", None, "gantry") is None  # nothing was created
        else:
            install(cluster, crds, manifests, "gantry")
            assert cluster.get("ClusterKopfPeering", None, "gantry") is not None


@pytest.mark.e2e
def test_helm_install_with_default_values_on_a_fresh_cluster_then_the_examples_reach_verified(
    fresh_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.harness.cluster import crd_conditions
    from tests.harness.helm_install import install
    from tests.harness.operator import OperatorThread, RecordingAlerter

    cluster = fresh_cluster
    crds, manifests = chart_files()
    created = install(cluster, crds, manifests, "gantry")
    for text in crds:  # every kind the chart's CRDs define is served (none refused, none in conflict)
        name = yaml.safe_load(text)["metadata"]["name"]
        conditions = crd_conditions(cluster, name)
        assert conditions.get("Established", {}).get("status") == "True", (name, conditions)
    kinds = {c["kind"] for c in created}
    assert {
        "ClusterKopfPeering",
        "Deployment",
        "ClusterRole",
        "ServiceAccount",
        "PodDisruptionBudget",
    } <= kinds
    # The operator as the chart runs it: the Deployment's settings, its ServiceAccount, enforced RBAC.
    (deployment,) = [c for c in created if c["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for env in container["env"]:
        monkeypatch.setenv(env["name"], env.get("value", ""))
    monkeypatch.setenv("GANTRY_GIT_CACHE", str(tmp_path / "git-cache"))  # the pod's emptyDir
    monkeypatch.setenv("GANTRY_METRICS_PORT", "0")
    monkeypatch.delenv("GANTRY_LIVENESS_ENDPOINT")
    config = Config.from_env()
    assert config.git_cache and config.peering == "gantry"  # the chart's defaults, git cache included
    # The chart's ServiceAccount and nothing more: RBAC enforced (a real server always enforces it).
    monkeypatch.setenv("KUBECONFIG", str(cluster.as_user("operator", tmp_path).kubeconfig))
    operator = OperatorThread(replace(config, peering_priority=100), RecordingAlerter()).start()
    try:
        for name in ("workloads.yaml", "pipeline.yaml", "release.yaml"):
            for doc in yaml.safe_load_all((ROOT / "examples" / name).read_text()):
                cluster.apply(doc)
        body = cluster.wait_for_phase("gantry", "shop-v1.4.0", "Verified", "Failed", "Blocked", timeout=90)
        assert body["status"]["phase"] == "Verified", body["status"]["message"]
        (artifact,) = body["spec"]["artifacts"]
        for namespace in ("shop-dev", "shop-staging"):
            assert cluster.images("Deployment", namespace, "web")["web"] == artifact["image"]
    finally:
        operator.stop()


@pytest.mark.e2e
def test_the_charts_people_roles_give_developers_the_buttons_and_on_call_the_approval(
    fresh_cluster: Any, tmp_path: Path
) -> None:
    """values people.teams binds the two roles in the application's namespace; the chart's admission
    policies refuse a developer's Approve and anyone's decision in another's name."""
    from gantry.adapters.kube import ApiError
    from tests.e2e import manifests as m
    from tests.e2e.test_rbac import await_policy
    from tests.harness.helm_install import install

    cluster = fresh_cluster
    argocd = "system:serviceaccount:argocd:argocd-application-controller"
    oncall = ["shop-oncall", "system:serviceaccounts:argocd"]  # Argo CD applies on-call's decisions from git
    team = {"namespace": "gantry", "developers": ["shop-developers"], "oncall": oncall}
    crds, manifests = chart_files({"people": {"teams": [team], "gitopsIdentities": [argocd]}})
    install(cluster, crds, manifests, "gantry")
    alice, bob = cluster.as_user("alice", tmp_path), cluster.as_user("bob", tmp_path)
    await_policy(bob, enforced=True)
    await_policy(alice, enforced=True, by="alice")

    with pytest.raises(ApiError) as refused:
        alice.apply(m.decision("gantry", "shop-v1", "Approve", by="alice"))
    assert refused.value.status == 422 and "need the approve verb" in refused.value.message
    for action in ("Rollback", "Emergency", "FailForward"):  # the team's three buttons
        alice.apply(m.decision("gantry", "shop-v1", action, by="alice"))
    bob.apply(m.decision("gantry", "shop-v1", "Approve", by="bob"))
    with pytest.raises(ApiError) as impersonation:
        bob.apply(m.decision("gantry", "shop-v1", "LiftQuarantine", by="alice"))
    assert "spec.decidedBy must be your own user name" in impersonation.value.message
    # A decision committed to git: the GitOps tool writes the name the commit gives.
    cluster.as_user("argocd", tmp_path).apply(
        m.decision("gantry", "shop-v1", "Approve", by="carol", name="git")
    )
    cluster.ensure_namespace("shop-other")
    with pytest.raises(ApiError) as elsewhere:  # bound in gantry only
        alice.apply(m.decision("shop-other", "shop-v1", "Rollback", by="alice"))
    assert elsewhere.value.status == 403
    assert (
        'resource "releasedecisions"' in elsewhere.value.message and "shop-other" in elsewhere.value.message
    )

    without = render({"people": {"admissionPolicies": False}})
    assert not by_kind(without, "ValidatingAdmissionPolicy")
