"""The webhook endpoint with the real operator and a real API client: a token from one namespace
cannot reach a ReleaseSource of another, and a path that names no source answers as a missing one.
(tests/unit/test_webhook_fuzz.py fuzzes the same endpoint with paths, headers and bodies.)"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import FAST
from tests.harness.cluster import Cluster
from tests.harness.observability import free_port
from tests.harness.operator import OperatorThread, RecordingAlerter

pytestmark = pytest.mark.e2e
EVENT = json.dumps({"ref": "refs/heads/main"}).encode()


def webhook_source(namespace: str, secret: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "application": "shop",
        "git": {"repository": "https://git.example/shop.git", "branch": "main"},
        "artifacts": [{"name": "web", "repository": "registry.example/shop/web"}],
        "intervalSeconds": 3600,
    }
    if secret is not None:
        spec["webhook"] = {"secretRef": {"name": secret}}
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "ReleaseSource",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": spec,
    }


def token_secret(namespace: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hooks", "namespace": namespace},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


@pytest.fixture
def hooks(cluster: Cluster) -> Iterator[str]:
    port = free_port()
    operator = OperatorThread(
        replace(FAST, webhook_port=port, webhook_address="127.0.0.1", source_tick=0.5), RecordingAlerter()
    ).start()
    yield f"http://127.0.0.1:{port}"
    operator.stop()


def post(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=EVENT, headers={"Authorization": f"Bearer {token}"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), json.loads(answer.read())["message"]
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())["message"]


def test_a_token_from_one_namespace_cannot_reach_a_source_in_another(
    cluster: Cluster, namespace: str, hooks: str
) -> None:
    evil, victim = f"{namespace}-evil", f"{namespace}-victim"
    for ns, token in ((evil, "evil-token"), (victim, "victim-token")):
        cluster.apply(token_secret(ns, token))
        cluster.apply(webhook_source(ns, "hooks"))

    def victim_checked() -> Any:
        return (cluster.must_get("ReleaseSource", victim, "shop").get("status") or {}).get("lastCheckedAt")

    checked = cluster.wait_for("the victim source's first look", victim_checked, timeout=30)
    missing = post(f"{hooks}/hooks/releasesources/{evil}/nosuch", "evil-token")
    assert missing[0] == 404
    for path in (
        f"{evil}/..%2F..%2F{victim}%2Freleasesources%2Fshop",  # as reported: 202, and victim looked
        f"{evil}/shop%2F..%2F..%2F..%2F{victim}%2Freleasesources%2Fshop",
        f"..%2F{victim}/shop",
        f"{evil}/%2E%2E",
        f"{evil}/shop/extra",
    ):
        assert post(f"{hooks}/hooks/releasesources/{path}", "evil-token") == missing, path
    assert post(f"{hooks}/hooks/releasesources/{victim}/shop", "evil-token")[0] == 401
    assert victim_checked() == checked  # never marked due by anything the evil token sent
    assert post(f"{hooks}/hooks/releasesources/{evil}/shop", "evil-token")[0] == 202


def test_a_source_is_authenticated_before_its_spec_is_judged_and_a_missing_secret_is_named(
    cluster: Cluster, namespace: str, hooks: str
) -> None:
    cluster.apply(webhook_source(namespace, "absent"))
    status, message = post(f"{hooks}/hooks/releasesources/{namespace}/shop", "anything")
    assert status == 403
    assert "names key 'token' of Secret 'absent', which its namespace does not have" in message
    cluster.apply(token_secret(namespace, "s3cret"))
    broken = webhook_source(namespace, "hooks")
    broken["spec"]["artifacts"] = [{"name": "web", "repository": "registry.example/shop/web:latest"}]
    with pytest.raises(Exception):  # noqa: B017  # admission refuses a tag in the repository
        cluster.apply(broken)
    cluster.apply(webhook_source(namespace, "hooks"))
    assert post(f"{hooks}/hooks/releasesources/{namespace}/shop", "wrong")[0] == 401
    assert post(f"{hooks}/hooks/releasesources/{namespace}/shop", "s3cret")[0] == 202
