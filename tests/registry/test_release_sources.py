"""A merge on main becomes a Release: a real bare git origin, real images in a real registry tagged
with the commit hash (as the seed's CI does), and the real operator with a ReleaseSource."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST
from tests.e2e import manifests as m
from tests.git.repos import Clone, origin_and_clone
from tests.harness.cluster import Cluster
from tests.harness.operator import OperatorThread, RecordingAlerter
from tests.harness.registry import Registry, build_image

pytestmark = pytest.mark.e2e


def release_source(namespace: str, origin: Path, host: str, policy: str = "NewestOnly") -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "ReleaseSource",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "application": "shop",
            "git": {"repository": str(origin), "branch": "main"},
            "artifacts": [
                {"name": "web", "repository": f"{host}/ci/web"},
                {"name": "worker", "repository": f"{host}/ci/worker", "tag": "sha-{shortCommit}"},
            ],
            "intervalSeconds": 5,
            "policy": policy,
        },
    }


def ci_builds(
    registry: Registry, tmp: Path, commit: str, only: tuple[str, ...] = ("web", "worker")
) -> dict[str, str]:
    """What the seed's CI does after a merge: build, tag the artifact with the commit hash, push."""
    digests = {}
    for name in only:
        tag = commit if name == "web" else f"sha-{commit[:7]}"
        layout = build_image(tmp / f"{commit[:7]}-{name}", f"{name} at {commit}", tag=tag)
        registry.push(layout, f"ci/{name}", tag)
        digests[name] = layout.digest
    return digests


def setup(cluster: Cluster, namespace: str, registry: Registry) -> None:
    """The seed's flow: dev (its integration tests earn the tag), staging under its lock, production."""
    for workload in m.workloads(namespace) + m.workloads(f"{namespace}-dev"):
        cluster.apply(workload)
    pipeline = m.pipeline(namespace)
    dev = {
        "name": "dev",
        "targets": [{"namespace": f"{namespace}-dev", "name": n} for n in ("web", "worker")],
        "test": {"jobTemplate": m.test_job_template("exit 0"), "timeoutSeconds": 30, "namespace": namespace},
    }
    pipeline["spec"]["stages"].insert(0, dev)
    pipeline["spec"]["registry"] = {"hosts": [{"host": registry.host, "tls": "Disabled"}]}
    cluster.apply(pipeline)


def merge(work: Clone, message: str) -> str:
    commit = work.commit(message)
    work.git("push", "-q", "origin", "main")
    return commit


def a_feature_after_v1_0_0(
    cluster: Cluster, namespace: str, registry: Registry, tmp_path: Path
) -> tuple[Path, Clone, str]:
    """origin at v1.0.0, the seed's Pipeline, then a feature merged on main; its images not pushed yet."""
    origin, work = origin_and_clone(tmp_path, "shop")
    merge(work, "chore(SHOP-0): start")
    work.git("tag", "v1.0.0")
    work.git("push", "-q", "origin", "v1.0.0")
    setup(cluster, namespace, registry)
    return origin, work, merge(work, "feat(SHOP-1): a checkout button")


def main_with_its_images(
    cluster: Cluster, namespace: str, registry: Registry, tmp_path: Path, source: dict[str, Any]
) -> tuple[Path, Clone, str]:
    """One commit on main, CI's images of it pushed, the seed's Pipeline, and `source` applied."""
    origin, work = origin_and_clone(tmp_path, "shop")
    base = merge(work, "chore(SHOP-0): start")
    setup(cluster, namespace, registry)
    ci_builds(registry, tmp_path, base)
    source["spec"]["git"]["repository"] = str(origin)
    cluster.apply(source)
    return origin, work, base


def test_a_commit_on_main_with_its_images_pushed_becomes_a_release_by_digest(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    origin, work, first = a_feature_after_v1_0_0(cluster, namespace, open_registry, tmp_path)
    cluster.apply(release_source(namespace, origin, open_registry.host))

    name = f"shop-{first[:12]}"

    def status() -> dict[str, Any]:
        return cluster.must_get("ReleaseSource", namespace, "shop").get("status") or {}

    cluster.wait_for(
        "the source to wait for CI",
        lambda: "waiting for CI to push" in status().get("message", ""),
        timeout=30,
    )
    assert cluster.get("Release", namespace, name) is None  # no images yet: no Release, never by tag
    assert f"ci/web:{first}" in status()["message"]

    digests = ci_builds(open_registry, tmp_path, first)
    body = cluster.wait_for("the Release", lambda: cluster.get("Release", namespace, name), timeout=30)
    images = {a["name"]: a["image"] for a in body["spec"]["artifacts"]}
    assert images == {k: f"{open_registry.host}/ci/{k}@{d}" for k, d in digests.items()}  # pinned by digest
    assert body["spec"]["source"] == {"repository": str(origin), "revision": first}
    assert "version" not in body["spec"]  # computed from the commits: feat after v1.0.0 is v1.1.0
    verified = cluster.wait_for_phase(namespace, name, "Verified", "Failed", "Blocked", timeout=60)
    assert verified["status"]["phase"] == "Verified", verified["status"]["message"]
    assert verified["status"]["version"] == "v1.1.0"
    tagged = subprocess.run(
        ["git", "rev-parse", "v1.1.0^{commit}"], cwd=origin, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tagged == first and verified["status"]["tag"]["pushed"] is True  # tagged once dev passed
    dev, staging = verified["status"]["stages"]
    assert (dev["name"], dev["testResult"]) == ("dev", "Succeeded")
    assert staging["name"] == "staging" and staging["lock"] and staging["lockAcquiredAt"]  # under its lock
    assert cluster.images("Deployment", f"{namespace}-dev", "web")["web"] == images["web"]
    assert cluster.images("Deployment", namespace, "web")["web"] == images["web"]
    assert status()["lastRelease"] == name and status()["conditions"][0]["status"] == "True"

    # Two merges before the next look: only the newest becomes a Release; the other is on record.
    skipped = merge(work, "fix(SHOP-2): rounding")
    newest = merge(work, "fix(SHOP-3): totals")
    ci_builds(open_registry, tmp_path, skipped)
    ci_builds(open_registry, tmp_path, newest)
    cluster.wait_for(
        "the newest Release", lambda: cluster.get("Release", namespace, f"shop-{newest[:12]}"), timeout=30
    )
    assert cluster.get("Release", namespace, f"shop-{skipped[:12]}") is None
    cluster.wait_for(  # the look records it as it ends, a moment after it made the Release
        "the skipped commit on record",
        lambda: any(r.get("commit") == skipped and r.get("skipped") for r in status()["releases"]),
        timeout=30,
    )


def test_a_feature_branch_never_becomes_a_release(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    source = release_source(namespace, Path("origin"), open_registry.host)
    _, work, base = main_with_its_images(cluster, namespace, open_registry, tmp_path, source)
    cluster.wait_for(
        "the main Release", lambda: cluster.get("Release", namespace, f"shop-{base[:12]}"), timeout=30
    )
    work.git("checkout", "-q", "-b", "uid/SHOP-9")
    feature = work.commit("feat(SHOP-9): not merged yet")
    work.git("push", "-q", "origin", "uid/SHOP-9")
    ci_builds(open_registry, tmp_path, feature)  # CI builds branches too
    cluster.wait_for(
        "another look at main",
        lambda: (
            (cluster.must_get("ReleaseSource", namespace, "shop").get("status") or {})
            .get("message", "")
            .endswith("nothing new since the last Release")
        ),
        timeout=30,
    )
    names = [r["metadata"]["name"] for r in cluster.list("Release", namespace)]
    assert names == [f"shop-{base[:12]}"]


def test_the_example_is_admitted_and_bad_ones_are_refused_naming_the_field(cluster: Cluster) -> None:
    import yaml

    from gantry.adapters.kube import ApiError
    from tests.harness.cluster import ROOT

    example = yaml.safe_load((ROOT / "examples" / "releasesource.yaml").read_text())
    created = cluster.apply(example)
    assert created["spec"]["artifacts"][0]["tag"] == "{commit}"  # the default the seed's CI uses
    for field, value, named in (
        ("tag", "latest", "spec.artifacts[].tag must contain {commit}"),
        (
            "repository",
            "registry.example.com/shop/web:latest",
            "spec.artifacts[].repository names a repository",
        ),
    ):
        bad = yaml.safe_load((ROOT / "examples" / "releasesource.yaml").read_text())
        bad["metadata"]["name"] = "bad"
        bad["spec"]["artifacts"][0][field] = value
        with pytest.raises(ApiError) as refused:
            cluster.apply(bad)
        assert named in refused.value.message
    bad = yaml.safe_load((ROOT / "examples" / "releasesource.yaml").read_text())
    bad["metadata"]["name"] = "bad"
    bad["spec"]["ephemeral"]["namespace"] = "shop-preview"  # every branch in one namespace
    with pytest.raises(ApiError) as refused:
        cluster.apply(bad)
    assert "spec.ephemeral.namespace must contain {branch}" in refused.value.message


def hooked_operator(tmp_path: Path, port: int) -> OperatorThread:
    """The operator with its webhook endpoint on `port` (and a git cache, a fast source tick)."""
    config = replace(
        FAST,
        git_cache=str(tmp_path / "git-cache"),
        source_tick=0.5,
        webhook_port=port,
        webhook_address="127.0.0.1",
    )
    return OperatorThread(config, RecordingAlerter()).start()


def released_once_hooks_only(cluster: Cluster, namespace: str, registry: Registry, tmp_path: Path) -> Clone:
    """A ReleaseSource that takes webhooks (token s3cret) and polls only hourly, its first commit
    released; returns the clone CI merges into."""
    import base64

    origin, work = origin_and_clone(tmp_path, "shop")
    base = merge(work, "chore(SHOP-0): start")
    setup(cluster, namespace, registry)
    ci_builds(registry, tmp_path, base)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks", "namespace": namespace}}
    cluster.apply({**secret, "data": {"token": base64.b64encode(b"s3cret").decode()}})
    source = release_source(namespace, origin, registry.host)
    source["spec"].update(intervalSeconds=3600, webhook={"secretRef": {"name": "hooks"}})  # no polling
    cluster.apply(source)
    cluster.wait_for(
        "the first look", lambda: cluster.get("Release", namespace, f"shop-{base[:12]}"), timeout=30
    )
    return work


def test_a_push_webhook_makes_the_release_within_seconds_and_bad_requests_change_nothing(
    cluster: Cluster, namespace: str, open_registry: Registry, tmp_path: Path
) -> None:
    import hashlib
    import hmac
    import json
    import urllib.error
    import urllib.request

    from tests.harness.observability import free_port

    port = free_port()
    running = hooked_operator(tmp_path, port)
    try:
        work = released_once_hooks_only(cluster, namespace, open_registry, tmp_path)
        pushed = merge(work, "fix(SHOP-1): totals")
        ci_builds(open_registry, tmp_path, pushed)
        url = f"http://127.0.0.1:{port}/hooks/releasesources/{namespace}/shop"

        def post(body: bytes, **headers: str) -> int:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as error:
                return int(error.code)

        event = json.dumps({"ref": "refs/heads/main", "after": pushed}).encode()
        signed = "sha256=" + hmac.new(b"s3cret", event, hashlib.sha256).hexdigest()
        assert post(event, **{"X-Hub-Signature-256": "sha256=" + "0" * 64}) == 401
        assert post(b"not json", **{"X-Gitlab-Token": "s3cret"}) == 400
        other = json.dumps({"ref": "refs/heads/uid/SHOP-9"}).encode()
        assert post(other, **{"X-Gitlab-Token": "s3cret"}) == 202  # accepted, ignored: not main
        assert cluster.get("Release", namespace, f"shop-{pushed[:12]}") is None
        assert post(event, **{"X-Hub-Signature-256": signed}) == 202
        made = cluster.wait_for(
            "the pushed commit's Release",
            lambda: cluster.get("Release", namespace, f"shop-{pushed[:12]}"),
            timeout=15,
        )
        assert made["spec"]["source"]["revision"] == pushed
    finally:
        running.stop()


def test_a_registry_notification_makes_the_release_once_ci_pushed_the_images(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The git push comes first, the images later: the registry's own notification (Distribution,
    configured with the source's token) is what tells Gantry the commit's images now exist."""

    from tests.harness.observability import free_port, require_binaries
    from tests.harness.registry import binaries_missing

    require_binaries(binaries_missing(), "docker-registry skopeo")
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/releasesources/{namespace}/shop"
    registry = Registry(tmp_path / "registry", notify=(url, "s3cret"))
    registry.start()
    running = hooked_operator(tmp_path, port)
    try:
        work = released_once_hooks_only(cluster, namespace, registry, tmp_path)
        pushed = merge(work, "fix(SHOP-1): totals")  # nobody tells Gantry about this git push
        digests = ci_builds(registry, tmp_path, pushed)  # the registry notifies on each manifest push
        made = cluster.wait_for(
            "the Release the registry's notification made",
            lambda: cluster.get("Release", namespace, f"shop-{pushed[:12]}"),
            timeout=20,
        )
        images = {a["name"]: a["image"] for a in made["spec"]["artifacts"]}
        assert images == {
            "web": f"{registry.host}/ci/web@{digests['web']}",
            "worker": f"{registry.host}/ci/worker@{digests['worker']}",
        }
    finally:
        running.stop()
        registry.stop()


def queued(cluster: Cluster, namespace: str, name: str) -> bool:
    body = cluster.get("Release", namespace, name) or {}
    return (body.get("status") or {}).get("step") == "WaitingForLock"


def a_fix_queued_before_frozen_staging(
    cluster: Cluster, namespace: str, registry: Registry, tmp_path: Path
) -> tuple[Clone, str]:
    """v1.0.0 tagged, staging frozen by a person, and a fix merged on main whose Release passed dev
    (which tags it v1.0.1) and waits in staging's queue: the clone CI merges into, and the fix."""
    origin, work = origin_and_clone(tmp_path, "shop")
    merge(work, "chore(SHOP-0): start")
    work.git("tag", "v1.0.0")
    work.git("push", "-q", "origin", "v1.0.0")
    setup(cluster, namespace, registry)
    lock = m.environment_lock(namespace, 60)
    lock["spec"]["freeze"] = {"by": "alice", "reason": "change freeze"}
    cluster.apply(lock)
    fix = merge(work, "fix(SHOP-1): rounding")
    ci_builds(registry, tmp_path, fix)
    cluster.apply(release_source(namespace, origin, registry.host))
    name = f"shop-{fix[:12]}"
    cluster.wait_for(f"{name} to queue for staging", lambda: queued(cluster, namespace, name), timeout=60)
    return work, fix


def test_newest_only_a_newer_release_waits_for_the_older_one_to_finish_the_stage_it_is_in(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    """Reported: in the seed's flow (dev has no lock) the newer commit's Release deployed to dev
    while the older one was testing there, and the older ended Failed/Superseded. Now the newer
    waits until the older has finished dev (here its test times out), then enters it."""
    origin, work = origin_and_clone(tmp_path, "shop")
    merge(work, "chore(SHOP-0): start")
    work.git("tag", "v1.0.0")
    work.git("push", "-q", "origin", "v1.0.0")
    setup(cluster, namespace, open_registry)
    pipeline = cluster.must_get("Pipeline", namespace, "shop")
    dev = pipeline["spec"]["stages"][0]
    dev["test"].update(jobTemplate=m.test_job_template("sleep infinity"), timeoutSeconds=12)
    cluster.apply(pipeline)
    older = merge(work, "fix(SHOP-1): rounding")
    images = ci_builds(open_registry, tmp_path, older)
    cluster.apply(release_source(namespace, origin, open_registry.host))
    first, second = f"shop-{older[:12]}", None

    def step(name: str) -> str:
        return str(((cluster.get("Release", namespace, name) or {}).get("status") or {}).get("step"))

    cluster.wait_for(f"{first} to test in dev", lambda: step(first) == "Testing", timeout=60)
    newer = merge(work, "fix(SHOP-2): totals")
    ci_builds(open_registry, tmp_path, newer)
    second = f"shop-{newer[:12]}"
    waiting = cluster.wait_for(
        f"{second} to wait for {first}",
        lambda: (
            (cluster.get("Release", namespace, second) or {}).get("status", {}).get("reason")
            == "WaitingForOlderRelease"
        ),
        timeout=30,
    )
    assert waiting
    message = cluster.must_get("Release", namespace, second)["status"]["message"]
    assert f"waiting for {first} to finish stage dev" in message
    dev_web = cluster.images("Deployment", f"{namespace}-dev", "web")["web"]
    assert dev_web == f"{open_registry.host}/ci/web@{images['web']}"  # still the older one's, mid-test
    ended = cluster.wait_for_phase(namespace, first, "Failed", "Superseded", "Verified", timeout=60)
    assert (ended["status"]["phase"], ended["status"]["reason"]) != ("Failed", "Superseded")
    assert ended["status"]["phase"] == "Failed" and ended["status"]["reason"] == "TestTimeout", ended[
        "status"
    ]
    cluster.wait_for(
        f"{second} to enter dev", lambda: step(second) in ("Testing", "RollingOut", "Deploying"), 60
    )


def test_newest_only_a_commit_with_nothing_to_release_never_takes_the_place_of_a_fix(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    """Reported: a docs-only commit superseded a fix waiting for staging, then stayed
    Blocked/NothingToRelease for ever, so staging never got the fix. Now it is skipped on record."""
    work, fix = a_fix_queued_before_frozen_staging(cluster, namespace, open_registry, tmp_path)
    first = f"shop-{fix[:12]}"
    docs = merge(work, "docs(SHOP-2): readme")
    ci_builds(open_registry, tmp_path, docs)

    def source_status() -> dict[str, Any]:
        return cluster.must_get("ReleaseSource", namespace, "shop").get("status") or {}

    cluster.wait_for("the docs commit to be looked at", lambda: source_status().get("lastCommit") == docs, 30)
    assert cluster.get("Release", namespace, f"shop-{docs[:12]}") is None
    (entry,) = [r for r in source_status()["releases"] if r.get("commit") == docs]
    assert entry["skipped"].startswith("nothing to release")
    body = cluster.must_get("Release", namespace, first)
    assert body["status"]["phase"] != "Superseded" and "superseded-by" not in str(body["metadata"])
    cluster.kube.merge_patch(
        f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/environmentlocks/staging",
        {"spec": {"freeze": None}},
    )
    verified = cluster.wait_for_phase(namespace, first, "Verified", "Failed", "Superseded", timeout=60)
    assert verified["status"]["phase"] == "Verified", verified["status"]["message"]  # staging got the fix


def test_newest_only_a_newer_commit_takes_the_place_of_an_older_release_still_queued(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    """Staging is frozen (a person's freeze), so commit A's Release waits in staging's queue after
    dev; commit B arrives: A gives way (Superseded, on record, out of the queue), B waits instead."""
    work, older = a_fix_queued_before_frozen_staging(cluster, namespace, open_registry, tmp_path)
    first = f"shop-{older[:12]}"
    newer = merge(work, "fix(SHOP-2): totals")
    ci_builds(open_registry, tmp_path, newer)
    gave_way = cluster.wait_for_phase(namespace, first, "Superseded", "Failed", "Verified", timeout=60)
    assert gave_way["status"]["phase"] == "Superseded", gave_way["status"]["message"]
    assert f"superseded by shop-{newer[:12]}" in gave_way["status"]["message"]
    assert [r["name"] for r in gave_way["status"]["stages"]] == ["dev", "staging"]  # dev had run it
    cluster.wait_for(
        f"shop-{newer[:12]} to queue", lambda: queued(cluster, namespace, f"shop-{newer[:12]}"), timeout=60
    )
    waiting = [
        w["release"] for w in cluster.must_get("EnvironmentLock", namespace, "staging")["status"]["queue"]
    ]
    assert waiting == [f"{namespace}/shop-{newer[:12]}"]  # the older one left the queue


def test_newest_only_the_newer_release_takes_the_older_ones_place_in_the_queue_not_the_back_of_it(
    cluster: Cluster, namespace: str, open_registry: Registry, source_operator: OperatorThread, tmp_path: Path
) -> None:
    """Another application (cart) shares staging and queued after shop's fix A. Commit B supersedes
    A: B waits at A's place, ahead of cart, with A's enqueue time, so an application that keeps
    merging is never sent to the back of the line (and never starves). Lifting the freeze
    serves B, then cart."""
    work, older = a_fix_queued_before_frozen_staging(cluster, namespace, open_registry, tmp_path)
    first, lock_path = f"{namespace}/shop-{older[:12]}", ("EnvironmentLock", namespace, "staging")
    for workload in m.workloads(f"{namespace}-cart"):
        cluster.apply(workload)
    cart = m.pipeline(namespace, "cart", app_namespace=f"{namespace}-cart")
    cart["spec"]["application"] = "cart"
    cluster.apply(cart)
    cart_release = m.release(namespace, "cart-v1", "cart-v1", pipeline_name="cart")
    cart_release["spec"]["application"] = "cart"
    del cart_release["spec"]["source"]  # made by hand, from no repository this test serves
    cluster.apply(cart_release)
    cluster.wait_for("cart to queue behind shop", lambda: queued(cluster, namespace, "cart-v1"), timeout=60)
    before = {w["release"]: w for w in cluster.must_get(*lock_path)["status"]["queue"]}
    assert list(before) == [first, f"{namespace}/cart-v1"]

    newer = merge(work, "fix(SHOP-2): totals")
    ci_builds(open_registry, tmp_path, newer)
    second = f"shop-{newer[:12]}"
    gave_way = cluster.wait_for_phase(namespace, first.split("/")[1], "Superseded", "Failed", timeout=60)
    assert gave_way["status"]["phase"] == "Superseded", gave_way["status"]["message"]
    cluster.wait_for(f"{second} to queue", lambda: queued(cluster, namespace, second), timeout=60)
    queue = cluster.must_get(*lock_path)["status"]["queue"]
    assert [w["release"] for w in queue] == [f"{namespace}/{second}", f"{namespace}/cart-v1"]
    assert queue[0]["enqueuedAt"] == before[first]["enqueuedAt"]  # A's place, A's time

    cluster.kube.merge_patch(
        f"/apis/gantry.dev/v1alpha1/namespaces/{namespace}/environmentlocks/staging",
        {"spec": {"freeze": None}},
    )
    for name in (second, "cart-v1"):
        done = cluster.wait_for_phase(namespace, name, "Verified", "Failed", timeout=90)
        assert done["status"]["phase"] == "Verified", done["status"]["message"]
    history = [h["release"] for h in cluster.must_get(*lock_path)["status"]["history"]]
    assert history.index(f"{namespace}/{second}") < history.index(f"{namespace}/cart-v1")
