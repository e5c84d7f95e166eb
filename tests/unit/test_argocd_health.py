"""The Argo CD health check (docs/argocd/release-health.lua), run in a real Lua runtime (lupa)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.cluster import ROOT

lupa = pytest.importorskip("lupa")
SCRIPT = (ROOT / "docs" / "argocd" / "release-health.lua").read_text()


def health(release: dict[str, Any]) -> dict[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(release, recursive=True)
    result = lua.execute(SCRIPT)
    return dict(result.items())


def release(phase: str | None, generation: int = 1, observed: int = 1, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "shop-v1", "generation": generation}}
    if phase is not None:
        body["status"] = {"phase": phase, "observedGeneration": observed, **status}
    return body


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Released", "Healthy"),
        ("Verified", "Healthy"),
        ("Superseded", "Healthy"),  # a newer commit's Release took its place: nothing is wrong
        ("Pending", "Progressing"),
        ("Queued", "Progressing"),
        ("Promoting", "Progressing"),
        ("Deploying", "Progressing"),
        ("Testing", "Progressing"),
        ("RollingBack", "Progressing"),
        ("Baking", "Progressing"),
        ("Soaking", "Progressing"),
        ("AwaitingApproval", "Suspended"),
        ("AwaitingDecision", "Suspended"),
        ("Held", "Suspended"),
        ("Blocked", "Degraded"),
        ("Failed", "Degraded"),
        ("RolledBack", "Degraded"),
        ("Emergency", "Degraded"),
        ("SomethingNew", "Unknown"),
    ],
)
def test_every_phase_maps_to_an_argo_cd_health(phase: str, expected: str) -> None:
    assert health(release(phase))["status"] == expected


def test_every_phase_the_crd_allows_is_covered() -> None:
    import yaml

    crd = yaml.safe_load((ROOT / "crds" / "gantry.dev_releases.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for phase in schema["properties"]["status"]["properties"]["phase"]["enum"]:
        assert health(release(phase))["status"] != "Unknown", phase


def test_the_message_says_phase_stage_and_why() -> None:
    result = health(release("Blocked", stage="staging", message="WorkloadNotFound: spec.stages[0]..."))
    assert result == {
        "status": "Degraded",
        "message": "Blocked (staging): WorkloadNotFound: spec.stages[0]...",
    }


def test_no_status_yet_or_an_unobserved_generation_is_progressing() -> None:
    assert health(release(None))["status"] == "Progressing"
    assert health(release("Released", generation=2, observed=1))["status"] == "Progressing"
