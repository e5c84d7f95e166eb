"""The emulated API server behaves like kube-apiserver where Gantry and Kopf depend on it.

These run against a real cluster too (GANTRY_TEST_KUBECONFIG): the same assertions hold there,
which is the point of having them.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from gantry.adapters.kube import ApiError, custom_path
from tests.e2e import manifests as m
from tests.harness.apiserver import parse_selector
from tests.harness.cluster import Cluster

pytestmark = pytest.mark.e2e

RELEASES = "/apis/gantry.dev/v1alpha1/namespaces/{ns}/releases"


def created(cluster: Cluster, namespace: str, name: str = "r1") -> dict[str, Any]:
    return cluster.apply(m.release(namespace, name, name))


def test_create_sets_server_managed_metadata_and_drops_status(cluster: Cluster, namespace: str) -> None:
    body = m.release(namespace, "r1", "r1")
    body["status"] = {"phase": "Verified"}
    obj = cluster.apply(body)
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert meta["generation"] == 1
    assert "status" not in obj or obj["status"].get("phase") != "Verified"


def test_writes_bump_resource_version_and_spec_changes_bump_generation(
    cluster: Cluster, namespace: str
) -> None:
    deployment = cluster.apply(m.deployment(namespace, "web", {"web": m.OLD_WEB}))
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web"
    labelled = cluster.kube.merge_patch(path, {"metadata": {"labels": {"tier": "front"}}})
    assert int(labelled["metadata"]["resourceVersion"]) > int(deployment["metadata"]["resourceVersion"])
    assert labelled["metadata"]["generation"] == deployment["metadata"]["generation"]
    scaled = cluster.kube.merge_patch(path, {"spec": {"replicas": 5}})
    assert scaled["metadata"]["generation"] == deployment["metadata"]["generation"] + 1
    same = cluster.kube.merge_patch(path, {"spec": {"replicas": 5}})
    assert same["metadata"]["resourceVersion"] == scaled["metadata"]["resourceVersion"]  # no-op: nothing new


def test_stale_resource_version_conflicts(cluster: Cluster, namespace: str) -> None:
    obj = created(cluster, namespace)
    path = RELEASES.format(ns=namespace) + "/r1"
    cluster.kube.merge_patch(path, {"metadata": {"labels": {"a": "1"}}})
    with pytest.raises(ApiError) as put:
        cluster.kube.replace(path, obj)  # carries the old resourceVersion
    assert put.value.status == 409
    with pytest.raises(ApiError) as patch:
        cluster.kube.merge_patch(
            path, {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"], "labels": {"a": "2"}}}
        )
    assert patch.value.status == 409
    with pytest.raises(ApiError) as test_op:
        cluster.kube.json_patch(
            path,
            [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": obj["metadata"]["resourceVersion"],
                },
                {"op": "add", "path": "/metadata/labels/b", "value": "x"},
            ],
        )
    assert test_op.value.status == 422  # what kube-apiserver answers, and what Kopf handles
    assert cluster.release(namespace, "r1")["metadata"]["labels"] == {"a": "1"}


def test_status_subresource_separates_spec_and_status_writes(cluster: Cluster, namespace: str) -> None:
    created(cluster, namespace)
    path = RELEASES.format(ns=namespace) + "/r1"
    cluster.kube.merge_patch(
        path + "/status", {"status": {"phase": "Queued"}, "metadata": {"labels": {"x": "y"}}}
    )
    after_status = cluster.release(namespace, "r1")
    assert after_status["status"]["phase"] == "Queued"
    assert "x" not in (after_status["metadata"].get("labels") or {})  # /status ignores everything else
    cluster.kube.merge_patch(path, {"status": {"phase": "Verified"}, "metadata": {"labels": {"x": "y"}}})
    after_main = cluster.release(namespace, "r1")
    assert after_main["status"]["phase"] == "Queued"  # the main resource ignores status
    assert after_main["metadata"]["labels"] == {"x": "y"}


def test_workload_status_counts_are_validated(cluster: Cluster, namespace: str) -> None:
    """A stand-in controller once wrote more available than ready replicas: a real server refuses."""
    cluster.apply(m.deployment(namespace, "web", {"web": m.OLD_WEB}))
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web/status"
    counts = {"replicas": 2, "updatedReplicas": 1, "readyReplicas": 0, "availableReplicas": 1}
    with pytest.raises(ApiError) as refused:
        cluster.kube.merge_patch(path, {"status": counts})
    assert refused.value.status == 422
    assert "status.availableReplicas: Invalid value: 1: cannot be greater than readyReplicas" in (
        refused.value.message
    )
    cluster.kube.merge_patch(path, {"status": {**counts, "readyReplicas": 1}})


def test_label_selectors_on_list(cluster: Cluster, namespace: str) -> None:
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web"}), ("c", {"app": "db"})]:
        cluster.apply(m.deployment(namespace, name, {"main": m.OLD_WEB}, labels=labels))

    def names(selector: str) -> list[str]:
        return [d["metadata"]["name"] for d in cluster.list("Deployment", namespace, selector)]

    assert names("app=web") == ["a", "b"]
    assert names("app!=web") == ["c"]
    assert names("app in (db, cache)") == ["c"]
    assert names("app notin (db),tier") == ["a"]
    assert names("!tier") == ["b", "c"]


def test_selector_parser_units() -> None:
    matches = parse_selector("env in (prod, staging),!canary,team=core")
    assert matches({"env": "prod", "team": "core"})
    assert not matches({"env": "prod", "team": "core", "canary": "1"})
    assert not matches({"env": "dev", "team": "core"})


def test_watch_replays_from_a_resource_version_then_streams(cluster: Cluster, namespace: str) -> None:
    first = created(cluster, namespace, "w1")
    created(cluster, namespace, "w2")
    since = first["metadata"]["resourceVersion"]
    events: list[dict[str, Any]] = []

    def consume() -> None:
        # Through the kubeconfig's client: its credentials and CA, whatever the API server.
        client = cluster.kube.api_client
        request = client.param_serialize(
            "GET",
            RELEASES.format(ns=namespace),
            query_params=[("watch", "true"), ("resourceVersion", since), ("timeoutSeconds", "2")],
            auth_settings=["BearerToken"],
        )
        response = client.call_api(*request).response  # the raw stream, not read at once
        for line in response.stream(1024 * 64):
            for chunk in line.decode().splitlines():
                if chunk.strip():
                    events.append(json.loads(chunk))

    reader = threading.Thread(target=consume)
    reader.start()
    cluster.wait_for("the backlog", lambda: len(events) >= 1, timeout=5)
    created(cluster, namespace, "w3")
    reader.join(10)
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert seen == [("ADDED", "w2"), ("ADDED", "w3")]  # w1 is older than the watch's resourceVersion


def test_crd_defaults_and_prunes(cluster: Cluster, namespace: str) -> None:
    pipeline = m.pipeline(namespace)
    pipeline["spec"]["stages"][0].pop("rolloutTimeoutSeconds")
    pipeline["spec"]["unknownField"] = "dropped"
    stored = cluster.apply(pipeline)
    stage = stored["spec"]["stages"][0]
    assert stage["rolloutTimeoutSeconds"] == 600 and stage["rollbackOnFailure"] is True
    assert "unknownField" not in stored["spec"]


def test_finalizers_hold_deletion_until_removed(cluster: Cluster, namespace: str) -> None:
    body = m.release(namespace, "fin", "fin")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    cluster.apply(body)
    cluster.delete("Release", namespace, "fin")
    held = cluster.release(namespace, "fin")
    assert held["metadata"]["deletionTimestamp"]
    cluster.kube.merge_patch(RELEASES.format(ns=namespace) + "/fin", {"metadata": {"finalizers": None}})
    assert cluster.get("Release", namespace, "fin") is None


def test_strategic_merge_patch_merges_containers_by_name(cluster: Cluster, namespace: str) -> None:
    cluster.apply(m.deployment(namespace, "web", {"web": m.OLD_WEB, "proxy": "proxy@" + m.digest("p")}))
    patched = cluster.kube.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        body={
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": m.image("web", "new")}]}}}
        },
        content_type="application/strategic-merge-patch+json",
    )
    containers = {c["name"]: c["image"] for c in patched["spec"]["template"]["spec"]["containers"]}
    assert containers == {"web": m.image("web", "new"), "proxy": "proxy@" + m.digest("p")}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"artifacts": []}, "spec.artifacts in body should have at least 1 items"),
        (
            {"hotfix": "yes"},
            'spec.hotfix: Invalid value: "string": spec.hotfix in body must be of type boolean: "string"',
        ),
        (
            {
                "artifacts": [
                    {"name": "web", "image": m.image("web", "a")},
                    {"name": "web", "image": m.image("web", "b")},
                ]
            },
            'spec.artifacts[1]: Duplicate value: {"name":"web"}',
        ),
    ],
    ids=["min-items", "type", "duplicate-key"],
)
def test_schema_errors_in_the_real_servers_words(
    cluster: Cluster, namespace: str, change: dict[str, Any], words: str
) -> None:
    body = m.release(namespace, "worded", "v1")
    body["spec"].update(change)
    with pytest.raises(ApiError) as refused:
        cluster.apply(body)
    assert refused.value.status == 422
    assert words in refused.value.message


def test_a_schema_error_says_the_rules_were_not_checked(cluster: Cluster, namespace: str) -> None:
    body = m.release(namespace, "unchecked", "v1")
    body["spec"]["hotfix"] = "yes"
    with pytest.raises(ApiError) as refused:
        cluster.apply(body)
    assert "some validation rules were not checked because the object was invalid" in refused.value.message


def test_names_longer_than_the_server_allows_are_refused(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(ApiError) as refused:
        cluster.apply(m.release(namespace, "r" * 254, "v1"))
    assert refused.value.status == 422 and "must be no more than 253 characters" in refused.value.message
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j" * 64, "namespace": namespace},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "busybox"}]}
            }
        },
    }
    with pytest.raises(ApiError) as too_long:
        cluster.apply(job)
    # A Job's name becomes its Pods' job-name label: the server refuses it as a label value.
    assert too_long.value.status == 422
    assert f'spec.template.labels: Invalid value: "{"j" * 64}": must be no more than 63 bytes' in (
        too_long.value.message
    )
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "labelled", "namespace": namespace, "labels": {"note": "x" * 64}},
    }
    with pytest.raises(ApiError) as long_label:
        cluster.apply(config_map)
    assert long_label.value.status == 422
    refused = f'ConfigMap "labelled" is invalid: metadata.labels: Invalid value: "{"x" * 64}"'
    assert f"{refused}: must be no more than 63 bytes" in long_label.value.message


# --- what real kubectl asks of the server (the sandbox relies on these) ------------------------


def raw_get(cluster: Cluster, path: str, accept: str = "application/json") -> Any:
    """GET with kubectl's Accept header, through the kubeconfig's client (its credentials and CA)."""
    client = cluster.kube.api_client
    method, url, headers, _, _ = client.param_serialize(
        method="GET", resource_path=path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
    )
    response = client.call_api(method, url, header_params=headers)
    assert response.status == 200, response.status
    return json.loads(response.read())


def test_core_discovery_says_group_version_v1_and_subresources_have_no_short_names(cluster: Cluster) -> None:
    listing = raw_get(cluster, "/api/v1")
    assert listing["groupVersion"] == "v1"  # kubectl apply maps kind Namespace in "v1" by it
    apps = raw_get(cluster, "/apis/apps/v1")["resources"]
    assert all(not r.get("shortNames") for r in apps if "/" in r["name"])  # else `kubectl get deploy` warns


def test_openapi_v3_tells_kubectl_the_server_validates_fields(cluster: Cluster) -> None:
    root = raw_get(cluster, "/openapi/v3")
    document = raw_get(cluster, root["paths"]["apis/gantry.dev/v1alpha1"]["serverRelativeURL"])
    patch = document["paths"]["/apis/gantry.dev/v1alpha1/namespaces/{namespace}/releases/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Release"
    assert "fieldValidation" in {p.get("name") for p in patch.get("parameters") or ()}


def test_kubectl_get_receives_a_table_with_the_crds_printer_columns(cluster: Cluster, namespace: str) -> None:
    created(cluster, namespace)
    table = raw_get(
        cluster,
        f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/releases",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Application", "Version", "Phase", "Stage"] and "Age" in names
    (row,) = table["rows"]
    assert row["cells"][0] == "r1" and row["object"]["metadata"]["name"] == "r1"


@pytest.mark.parametrize(
    ("change", "field", "said"),
    [
        (
            {"artifacts": [{"name": "web", "image": "registry.example.com/shop/web:latest"}]},
            "spec.artifacts[0].image",
            'Invalid value: "registry.example.com/shop/web:latest": image must be pinned by digest',
        ),
        ({"hotfix": "yes"}, "<nil>", "Invalid value: null: some validation rules were not checked"),
    ],
    ids=["rule", "rules-not-checked"],
)
def test_each_cause_names_its_field_once(
    cluster: Cluster, namespace: str, change: dict[str, Any], field: str, said: str
) -> None:
    """kubectl prints `field: message` from the causes: a message that repeated its field read
    `spec.artifacts[0].image: spec.artifacts[0].image: …` in the sandbox, never on a real server."""
    body = m.release(namespace, "caused", "v1")
    body["spec"].update(change)
    with pytest.raises(ApiError) as refused:
        cluster.apply(body)
    causes = refused.value.details["causes"]
    assert all(not c["message"].startswith(f"{c['field']}:") for c in causes), causes
    (cause,) = [c for c in causes if c["field"] == field]
    assert cause["message"].startswith(said), cause


@pytest.mark.parametrize("mode", ["Strict", "Warn", "Ignore"])
def test_unknown_fields_are_refused_warned_about_or_dropped_as_asked(
    cluster: Cluster, namespace: str, mode: str
) -> None:
    """kubectl apply --validate=strict sends fieldValidation=Strict: a typo (`hotfx`) is refused,
    never stored as the default it shadowed; Warn (the server's default) says it in a header."""
    cluster.ensure_namespace(namespace)
    body = m.release(namespace, f"typo-{mode.lower()}", "v1")
    body["spec"]["hotfx"] = True
    client = cluster.kube.api_client
    request = client.param_serialize(
        method="POST",
        resource_path=custom_path("releases", namespace),
        query_params=[("fieldValidation", mode)],
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    answer = client.call_api(*request)
    said = json.loads(answer.read())
    if mode == "Strict":
        assert answer.status == 400 and said["reason"] == "BadRequest"
        assert said["message"] == (
            'Release in version "v1alpha1" cannot be handled as a Release: '
            'strict decoding error: unknown field "spec.hotfx"'
        )
        assert cluster.get("Release", namespace, f"typo-{mode.lower()}") is None
        return
    assert answer.status == 201 and "hotfx" not in said["spec"] and said["spec"]["hotfix"] is False
    warning = dict(answer.getheaders()).get("Warning")
    assert (warning == '299 - "unknown field \\"spec.hotfx\\""') == (mode == "Warn"), warning


def test_a_field_selector_on_events_picks_one_objects_events(cluster: Cluster, namespace: str) -> None:
    """`kubectl describe release X` asks for X's Events only (involvedObject.name=X)."""
    cluster.ensure_namespace(namespace)
    for name in ("shop-v1", "shop-v2"):
        cluster.kube.create(
            f"/api/v1/namespaces/{namespace}/events",
            {
                "metadata": {"name": f"{name}.event", "namespace": namespace},
                "involvedObject": {"kind": "Release", "name": name, "namespace": namespace},
                "reason": "Deployed",
                "message": f"about {name}",
                "type": "Normal",
            },
        )
    found = cluster.kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        query={"fieldSelector": "involvedObject.name=shop-v1,involvedObject.kind=Release"},
    )
    assert [e["message"] for e in found["items"]] == ["about shop-v1"]


def test_self_subject_review_says_who_the_token_is(cluster: Cluster) -> None:
    """`kubectl auth whoami` (the README's ReleaseDecision heredocs use it for decidedBy)."""
    review = cluster.kube.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    user = review["status"]["userInfo"]
    assert user["username"] and "system:authenticated" in user["groups"]
