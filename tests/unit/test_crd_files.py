"""crds/ as a real kube-apiserver reads it: no CEL rule over unbounded data, no name two CRDs claim.

Both defects once stopped every real install (issue 22): the Pipeline CRD was refused ("estimated
rule cost exceeds budget") and ProductionLedger was left not Established (`pl` was Pipeline's too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import crd_checks

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))

# `kubectl api-resources` on a plain cluster, plus the CRDs most clusters also run (cert-manager,
# Argo CD, Argo Rollouts, Flux, Kargo, Prometheus Operator): a short name of ours that is one of
# these makes `kubectl get NAME` ambiguous.
COMMON_SHORT_NAMES = {
    "cm", "crd", "crds", "cs", "csr", "deploy", "ds", "ep", "ev", "hpa", "ing", "ingclass",
    "limits", "netpol", "no", "ns", "pc", "pdb", "po", "psp", "pv", "pvc", "quota", "rc", "rs",
    "sa", "sc", "sts", "svc", "vac",
    "cert", "certs", "cr", "crs", "app", "apps", "appproj", "appprojects", "ro", "rollout",
    "hr", "ks", "gitrepo", "helmrepo", "kargo", "stage", "warehouse", "freight", "promo",
    "prom", "smon", "pmon", "amcfg", "promrule",
}  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


@pytest.mark.parametrize("path", CRDS, ids=[p.name for p in CRDS])
def test_every_cel_rule_sees_only_bounded_data(path: Path) -> None:
    assert crd_checks.schema_errors(load(path)) == []


def test_every_crd_is_established_when_installed_in_any_order() -> None:
    crds = [load(path) for path in CRDS]
    for ordering in (crds, list(reversed(crds))):
        installed: list[dict[str, Any]] = []
        for crd in ordering:
            verdict = crd_checks.naming(crd, installed)
            assert verdict.accepted, f"{crd['metadata']['name']}: {verdict.reason}: {verdict.message}"
            installed.append({**crd, "status": verdict.status(crd["spec"]["names"], ["v1alpha1"])})


def test_short_names_are_unique_and_clear_of_common_ones() -> None:
    seen: dict[str, str] = {}
    for path in CRDS:
        crd = load(path)
        for short in crd["spec"]["names"].get("shortNames") or ():
            assert short not in seen, f"{short} is claimed by {seen[short]} and {crd['metadata']['name']}"
            assert short not in COMMON_SHORT_NAMES, (
                f"{crd['metadata']['name']}: {short} is a common short name"
            )
            seen[short] = crd["metadata"]["name"]


# --- the checks fail on what once broke a real install ---------------------------------------------


def window_without_max_length() -> dict[str, Any]:
    return {
        "spec": {
            "versions": [
                {
                    "name": "v1alpha1",
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "stages": {
                                    "type": "array",
                                    "maxItems": 16,
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "window": {
                                                "type": "string",
                                                "x-kubernetes-validations": [
                                                    {"rule": "!self.matches('^0+(ms|s|m|h)$')"}
                                                ],
                                            }
                                        },
                                    },
                                }
                            },
                        }
                    },
                }
            ]
        }
    }


def test_a_rule_over_a_string_without_max_length_is_refused() -> None:
    errors = crd_checks.schema_errors(window_without_max_length())
    assert errors and errors[0].startswith(
        "spec.validation.openAPIV3Schema.properties[stages].items.properties[window]"
        ".x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget"
    )
    assert "no maxLength" in errors[0]


def test_a_rule_inside_an_unbounded_list_is_refused_and_bounds_make_it_pass() -> None:
    crd = window_without_max_length()
    stages = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["stages"]
    stages["items"]["properties"]["window"]["maxLength"] = 16
    assert crd_checks.schema_errors(crd) == []
    del stages["maxItems"]
    [error] = crd_checks.schema_errors(crd)
    assert (
        "the rule can reach spec.validation.openAPIV3Schema.properties[stages], which has no maxItems"
        in error
    )


def test_a_rule_over_a_map_without_max_properties_is_refused() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.size() > 0"}],
        "additionalProperties": {"type": "string", "maxLength": 63},
    }
    [error] = crd_checks.unbounded_rules(schema, "spec.validation.openAPIV3Schema")
    assert "no maxProperties" in error


def test_a_short_name_claimed_twice_leaves_the_second_crd_not_established() -> None:
    def crd(name: str, plural: str, kind: str, shorts: list[str]) -> dict[str, Any]:
        return {
            "metadata": {"name": f"{plural}.gantry.dev"},
            "spec": {"group": "gantry.dev", "names": {"plural": plural, "kind": kind, "shortNames": shorts}},
        }

    first = crd("a", "pipelines", "Pipeline", ["pl", "gpl"])
    verdict = crd_checks.naming(first, [])
    installed = [{**first, "status": verdict.status(first["spec"]["names"], [])}]
    second = crd("b", "productionledgers", "ProductionLedger", ["ledger", "pl"])
    verdict = crd_checks.naming(second, installed)
    assert not verdict.accepted
    assert (verdict.reason, verdict.message) == ("ShortNamesConflict", '"pl" is already in use')
    conditions = {c["type"]: c["status"] for c in verdict.status(second["spec"]["names"], [])["conditions"]}
    assert conditions == {"NamesAccepted": "False", "Established": "False"}
