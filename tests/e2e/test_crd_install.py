"""`kubectl apply -f crds/` on a fresh API server leaves every kind served, and the emulator refuses
what kube-apiserver refuses in a CRD: a CEL rule over unbounded data, names another CRD holds.

These run unchanged on the envtest tier, where a real kube-apiserver gives the verdicts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.adapters.kube import ApiError
from tests.harness.cluster import CRD_DIR, Cluster, crd_conditions

pytestmark = pytest.mark.e2e


def test_every_crd_in_crds_is_established_and_served(cluster: Cluster) -> None:
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(Path(path).read_text())
        conditions = crd_conditions(cluster, crd["metadata"]["name"])
        assert conditions["NamesAccepted"]["status"] == "True", conditions["NamesAccepted"]
        assert conditions["Established"]["status"] == "True", conditions["Established"]
        spec = crd["spec"]
        served = cluster.kube.get(f"/apis/{spec['group']}/{spec['versions'][0]['name']}")
        assert served is not None
        assert spec["names"]["plural"] in {r["name"] for r in served["resources"]}


def crd_of(
    group: str, plural: str, kind: str, short_names: list[str], schema: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": short_names},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }


OPEN_SPEC = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {"note": {"type": "string", "maxLength": 64}}}},
}


@pytest.fixture
def group(cluster: Cluster) -> Iterator[str]:
    """A group of this test's own, its CRDs deleted after (a real server is shared by the session)."""
    name = f"t{uuid.uuid4().hex[:8]}.gantry-tests.dev"
    yield name
    for crd in cluster.list("CustomResourceDefinition", None):
        if crd["spec"]["group"] == name:
            cluster.delete("CustomResourceDefinition", None, crd["metadata"]["name"])


def test_a_rule_that_can_run_over_unbounded_strings_is_refused(cluster: Cluster, group: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "windows": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "x-kubernetes-validations": [{"rule": "!self.matches('^0+(ms|s|m|h)$')"}],
                        },
                    }
                },
            }
        },
    }
    with pytest.raises(ApiError) as refused:
        cluster.apply(crd_of(group, "bakes", "Bake", [], schema))
    assert refused.value.status == 422
    assert (
        "x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget"
        in refused.value.message
    )


def test_a_crd_whose_short_name_another_holds_is_stored_but_not_served(cluster: Cluster, group: str) -> None:
    short = f"x{group[1:7]}"
    cluster.apply(crd_of(group, "pipes", "Pipe", [short, "p" + short], OPEN_SPEC))
    cluster.apply(crd_of(group, "ledgers", "Ledger", ["l" + short, short], OPEN_SPEC))
    deadline = time.monotonic() + 30
    while True:  # a real server's naming controller decides a moment later
        first, second = crd_conditions(cluster, f"pipes.{group}"), crd_conditions(cluster, f"ledgers.{group}")
        if "NamesAccepted" in second and first.get("Established", {}).get("status") == "True":
            break
        assert time.monotonic() < deadline, (first, second)
        time.sleep(0.2)
    assert second["NamesAccepted"]["status"] == "False"
    assert second["NamesAccepted"]["reason"] == "ShortNamesConflict"
    assert second["NamesAccepted"]["message"] == f'"{short}" is already in use'
    assert second.get("Established", {}).get("status") != "True"
    with pytest.raises(ApiError) as missing:
        cluster.kube.list_items(f"/apis/{group}/v1/namespaces/default/ledgers")
    assert missing.value.status == 404
    assert cluster.kube.list_items(f"/apis/{group}/v1/namespaces/default/pipes") == []
