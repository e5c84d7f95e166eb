"""End to end: the real operator promotes real images in a real registry while walking a Release
through staging and production; production runs the copy in the production repository, same digest."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import manifests as m
from tests.harness.cluster import Cluster
from tests.harness.observability import free_port
from tests.harness.operator import OperatorThread
from tests.harness.registry import Layout, Registry, build_image
from tests.registry.conftest import USERS

pytestmark = pytest.mark.e2e
PROD_NS = "shop-prod"


def pipeline(
    namespace: str, registry_host: str, secret: str | None = None, timeout: int = 60
) -> dict[str, Any]:
    staging_targets = [{"namespace": namespace, "name": "web"}, {"namespace": namespace, "name": "worker"}]
    prod_targets = [{"namespace": PROD_NS, "name": "web"}, {"namespace": PROD_NS, "name": "worker"}]
    spec: dict[str, Any] = {
        "application": "shop",
        "requireTag": False,  # these tests' Releases name their version and carry no git source
        "registry": {"hosts": [{"host": registry_host, "tls": "Disabled"}]},
        "stages": [
            {
                "name": "staging",
                "lock": True,
                "registry": {"timeoutSeconds": timeout},  # the seed: tag the existing artifact
                "targets": staging_targets,
            },
            {
                "name": "production",
                "production": True,
                "promotion": "Auto",
                "registry": {"repository": f"{registry_host}/prod/{{name}}", "timeoutSeconds": timeout},
                "targets": prod_targets,
            },
        ],
    }
    if secret:
        spec["registry"]["credentialsSecretRef"] = {"name": secret}
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": spec,
    }


def pull_secret(namespace: str, host: str, user: str, password: str) -> dict[str, Any]:
    config = {"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": namespace},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


class Shop:
    """Images built and pushed to <registry>/dev/web and dev/worker (worker: two platforms)."""

    def __init__(self, cluster: Cluster, namespace: str, registry: Registry, tmp: Path) -> None:
        self.cluster, self.namespace, self.registry, self.tmp = cluster, namespace, registry, tmp
        for ns in (namespace, PROD_NS):
            for workload in m.workloads(ns):
                cluster.apply(workload)

    def layouts(self, content: str) -> dict[str, Layout]:
        web = build_image(self.tmp / f"{content}-web", f"{content} web", tag=content)
        worker = build_image(
            self.tmp / f"{content}-worker", f"{content} worker", tag=content, platforms=("amd64", "arm64")
        )
        return {"web": web, "worker": worker}

    def push(self, images: dict[str, Layout]) -> None:
        for name, layout in images.items():
            self.registry.push(layout, f"dev/{name}", layout.tag)

    def build(self, content: str) -> dict[str, Layout]:
        images = self.layouts(content)
        self.push(images)
        return images

    def release(self, name: str, version: str, images: dict[str, Layout]) -> None:
        artifacts = {k: f"{self.registry.host}/dev/{k}@{v.digest}" for k, v in images.items()}
        self.cluster.apply(m.release(self.namespace, name, name, version=version, artifacts=artifacts))

    def wait(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        return self.cluster.wait_for_phase(self.namespace, name, *phases, timeout=timeout)

    def images(self, namespace: str) -> dict[str, str]:
        return {k: self.cluster.images("Deployment", namespace, k)[k] for k in ("web", "worker")}


@pytest.fixture
def shop(cluster: Cluster, namespace: str, open_registry: Registry, tmp_path: Path) -> Iterator[Shop]:
    yield Shop(cluster, namespace, open_registry, tmp_path)


def test_staging_tags_in_place_and_production_runs_the_copy_with_identical_digests(
    shop: Shop, operator: OperatorThread
) -> None:
    reg = shop.registry
    shop.cluster.apply(pipeline(shop.namespace, reg.host))
    images = shop.build("flow")
    shop.release("shop-v1", "v1.0.0", images)
    body = shop.wait("shop-v1", "Released", "Failed", "Blocked")
    assert body["status"]["phase"] == "Released", body["status"]["message"]
    for name, layout in images.items():
        assert reg.digest(f"dev/{name}", "v1.0.0") == layout.digest  # tagged on the existing artifact
        assert reg.digest(f"prod/{name}", "v1.0.0") == layout.digest  # copied byte for byte
    for child in images["worker"].children:
        assert reg.digest("prod/worker", child) == child  # the whole index, every platform
    assert shop.images(shop.namespace) == {k: f"{reg.host}/dev/{k}@{v.digest}" for k, v in images.items()}
    assert shop.images(PROD_NS) == {k: f"{reg.host}/prod/{k}@{v.digest}" for k, v in images.items()}
    production = body["status"]["stages"][-1]
    assert production["registry"]["images"]["web"] == f"{reg.host}/prod/web@{images['web'].digest}"
    assert production["provenance"]["stage"] == "staging"
    assert shop.cluster.wait_for_events(shop.namespace, "shop-v1", "Promoted", "RegistryTagged")


def test_a_version_tag_already_on_another_digest_fails_production_and_changes_nothing(
    shop: Shop, operator: OperatorThread
) -> None:
    reg = shop.registry
    shop.cluster.apply(pipeline(shop.namespace, reg.host))
    squatter = shop.build("squatter")
    reg.push(squatter["web"], "prod/web", "v3.0.0")  # someone pushed v3.0.0 by hand
    before = shop.images(PROD_NS)
    shop.release("shop-v3", "v3.0.0", shop.build("collide"))
    body = shop.wait("shop-v3", "Released", "Failed", "Blocked")
    assert (body["status"]["phase"], body["status"]["reason"]) == ("Failed", "RegistryTagCollision")
    assert "never overwritten" in body["status"]["message"] and "prod/web:v3.0.0" in body["status"]["message"]
    assert reg.digest("prod/web", "v3.0.0") == squatter["web"].digest
    assert shop.images(PROD_NS) == before
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RegistryTagCollision"


def test_an_unreachable_registry_is_retried_until_it_comes_back(
    shop: Shop, cluster: Cluster, namespace: str, operator: OperatorThread, tmp_path: Path
) -> None:
    late = Registry(tmp_path / "late")  # its port is known, but nothing listens yet
    shop.registry = late
    cluster.apply(pipeline(namespace, late.host))
    images = shop.layouts("late")
    shop.release("shop-v4", "v4.0.0", images)

    def retrying() -> dict[str, Any] | None:
        status = cluster.release(namespace, "shop-v4").get("status") or {}
        runs = status.get("stages") or [{}]
        return status if (runs[-1].get("registry") or {}).get("attempts", 0) >= 2 else None

    status = cluster.wait_for("two registry attempts with backoff", retrying, timeout=30)
    assert (status["phase"], status["reason"]) == ("Promoting", "RegistryUnavailable")
    assert shop.images(namespace) == {"web": m.OLD_WEB, "worker": m.OLD_WORKER}
    late.start()
    try:
        shop.push(images)
        body = shop.wait("shop-v4", "Released", "Failed", timeout=90)
        assert body["status"]["phase"] == "Released", body["status"]["message"]
        assert late.digest("prod/worker", "v4.0.0") == images["worker"].digest
    finally:
        late.stop()


def test_a_registry_that_stays_down_fails_the_release_clearly(
    cluster: Cluster, namespace: str, shop: Shop, operator: OperatorThread
) -> None:
    host = f"127.0.0.1:{free_port()}"
    cluster.apply(pipeline(namespace, host, timeout=3))
    digest = m.digest("down")
    artifacts = {"web": f"{host}/dev/web@{digest}", "worker": f"{host}/dev/worker@{digest}"}
    cluster.apply(m.release(namespace, "shop-v5", "down", version="v5.0.0", artifacts=artifacts))
    body = shop.wait("shop-v5", "Failed", "Released", timeout=30)
    assert body["status"]["reason"] == "RegistryUnavailable"
    assert (
        "gave up after 3s" in body["status"]["message"]
        and "nothing was deployed" in body["status"]["message"]
    )
    assert shop.images(namespace) == {"web": m.OLD_WEB, "worker": m.OLD_WORKER}
    lock = cluster.get("EnvironmentLock", namespace, "staging")  # never asked for: promotion comes first
    assert lock is None or not (lock.get("status") or {}).get("holder")


def test_wrong_registry_credentials_block_with_the_fix_and_a_corrected_secret_unblocks(
    cluster: Cluster, namespace: str, auth_registry: Registry, tmp_path: Path, operator: OperatorThread
) -> None:
    shop = Shop(cluster, namespace, auth_registry, tmp_path)
    user, password = next(iter(USERS.items()))
    cluster.apply(pull_secret(namespace, auth_registry.host, user, "wrong"))
    cluster.apply(pipeline(namespace, auth_registry.host, secret="regcred"))
    images = shop.build("auth")
    shop.release("shop-v6", "v6.0.0", images)
    body = shop.wait("shop-v6", "Blocked", "Released", "Failed")
    assert body["status"]["reason"] == "RegistryAuthFailed"
    assert "spec.registry.credentialsSecretRef" in body["status"]["message"]
    assert shop.images(namespace) == {"web": m.OLD_WEB, "worker": m.OLD_WORKER}
    cluster.apply(pull_secret(namespace, auth_registry.host, user, password))
    body = shop.wait("shop-v6", "Released", "Failed", timeout=60)
    assert body["status"]["phase"] == "Released", body["status"]["message"]
    assert auth_registry.digest("prod/worker", "v6.0.0") == images["worker"].digest
