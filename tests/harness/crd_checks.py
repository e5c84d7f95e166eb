"""What kube-apiserver refuses in a CustomResourceDefinition that a lenient emulator would serve.

Two checks, used by the emulated API server when a CRD is written and by a unit test over crds/:

- **CEL cost**: the real server estimates each `x-kubernetes-validations` rule's worst-case cost from
  the schema's bounds and refuses the CRD when it is over budget ("estimated rule cost exceeds
  budget"). The estimate needs Kubernetes' CEL cost model; the conservative stand-in here is that a
  rule may only see bounded data: every string under the rule's node has `maxLength` (or an
  `enum`), every list `maxItems`, every map `maxProperties`, and every list or map above it (which
  multiplies how often the rule runs) is bounded too. Anything this accepts, the server accepts.
  Objects kept whole (`x-kubernetes-preserve-unknown-fields`, such as an embedded Job template) are
  not typed as strings, lists or maps, and the server's estimate does not walk into them either.
- **Names**: kube-apiserver's naming controller accepts a CRD's plural, singular, kind, list kind
  and short names only when no other CRD of the same group already holds them; a CRD whose names
  conflict is stored but left not Established (`NamesAccepted=False`, `ShortNamesConflict: "pl" is
  already in use`) and its kind is not served at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

COST_HINT = (
    "try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, "
    "and strings are declared"
)


def _missing_bound(node: Mapping[str, Any]) -> str | None:
    kind = node.get("type")
    if kind == "string" and "maxLength" not in node and "enum" not in node:
        return "maxLength"
    if kind == "array" and "maxItems" not in node:
        return "maxItems"
    is_map = kind == "object" and isinstance(node.get("additionalProperties"), Mapping)
    if is_map and "maxProperties" not in node:
        return "maxProperties"
    return None


def _children(node: Mapping[str, Any], path: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}.properties[{name}]", sub
    if isinstance(node.get("items"), Mapping):
        yield f"{path}.items", node["items"]
    if isinstance(node.get("additionalProperties"), Mapping):
        yield f"{path}.additionalProperties", node["additionalProperties"]


def _unbounded_below(node: Mapping[str, Any], path: str) -> Iterable[tuple[str, str]]:
    missing = _missing_bound(node)
    if missing:
        yield path, missing
    for child_path, child in _children(node, path):
        yield from _unbounded_below(child, child_path)


def unbounded_rules(schema: Mapping[str, Any], root: str) -> list[str]:
    """One field error per CEL rule that can see unbounded data, in kube-apiserver's path form."""
    errors: list[str] = []

    def walk(node: Mapping[str, Any], path: str, unbounded_above: list[tuple[str, str]]) -> None:
        rules = node.get("x-kubernetes-validations") or ()
        if rules:
            reach = unbounded_above + list(_unbounded_below(node, path))
            if reach:
                where, bound = reach[0]
                for index in range(len(rules)):
                    errors.append(
                        f"{path}.x-kubernetes-validations[{index}].rule: Forbidden: estimated rule cost "
                        f"exceeds budget: the rule can reach {where}, which has no {bound} (the "
                        f"emulator's conservative stand-in for the server's estimate; {COST_HINT})"
                    )
        missing = _missing_bound(node)
        multiplies = missing in ("maxItems", "maxProperties")
        above = unbounded_above + ([(path, missing)] if multiplies and missing else [])
        for child_path, child in _children(node, path):
            walk(child, child_path, above)

    walk(schema, root, [])
    return errors


def schema_errors(crd: Mapping[str, Any]) -> list[str]:
    """The CEL-cost errors of every version's schema (the server names a single shared schema
    spec.validation.openAPIV3Schema, as in its messages)."""
    versions = (crd.get("spec") or {}).get("versions") or ()
    errors: list[str] = []
    for index, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, Mapping):
            continue
        root = (
            "spec.validation.openAPIV3Schema"
            if len(versions) == 1
            else f"spec.versions[{index}].schema.openAPIV3Schema"
        )
        errors += unbounded_rules(schema, root)
    return errors


@dataclass(frozen=True)
class Naming:
    """The naming controller's verdict on one CRD: the conditions it writes and whether it serves."""

    accepted: bool
    reason: str
    message: str

    def status(self, names: Mapping[str, Any], stored_versions: list[str]) -> dict[str, Any]:
        if self.accepted:
            established = ("True", "InitialNamesAccepted", "the initial names have been accepted")
        else:
            established = ("False", "NotAccepted", "not all names are accepted")
        return {
            "acceptedNames": {**names, "listKind": names.get("listKind") or f"{names['kind']}List"}
            if self.accepted
            else {},
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True" if self.accepted else "False",
                    "reason": self.reason,
                    "message": self.message,
                },
                dict(zip(("status", "reason", "message"), established, strict=True), type="Established"),
            ],
            "storedVersions": stored_versions,
        }


def _claimed(names: Mapping[str, Any]) -> dict[str, set[str]]:
    return {
        "plural": {names.get("plural", "")} - {""},
        "singular": {names.get("singular", "")} - {""},
        "kind": {names.get("kind", "")} - {""},
        "listKind": {names.get("listKind") or f"{names.get('kind', '')}List"} - {"List"},
        "shortNames": set(names.get("shortNames") or ()),
    }


def naming(crd: Mapping[str, Any], established: Iterable[Mapping[str, Any]]) -> Naming:
    """Whether `crd`'s names are free among the accepted names of the group's other CRDs."""
    spec = crd.get("spec") or {}
    group = spec.get("group")
    taken: dict[str, set[str]] = {"plural": set(), "singular": set(), "kind": set(), "listKind": set()}
    resource_names: set[str] = set()
    for other in established:
        other_spec = other.get("spec") or {}
        if other_spec.get("group") != group or other["metadata"]["name"] == crd["metadata"]["name"]:
            continue
        accepted = (other.get("status") or {}).get("acceptedNames") or {}
        claimed = _claimed(accepted)
        for field in taken:
            taken[field] |= claimed[field]
        resource_names |= claimed["plural"] | claimed["singular"] | claimed["shortNames"]
    wanted = _claimed(spec.get("names") or {})
    for field, reason in (("plural", "PluralConflict"), ("singular", "SingularConflict")):
        clash = sorted(wanted[field] & resource_names)
        if clash:
            return Naming(False, reason, f'"{clash[0]}" is already in use')
    clash = sorted(wanted["shortNames"] & resource_names)
    if clash:
        return Naming(False, "ShortNamesConflict", f'"{clash[0]}" is already in use')
    for field, reason in (("kind", "KindConflict"), ("listKind", "ListKindConflict")):
        clash = sorted(wanted[field] & (taken["kind"] | taken["listKind"]))
        if clash:
            return Naming(False, reason, f'"{clash[0]}" is already in use')
    return Naming(True, "NoConflicts", "no conflicts found")
