"""Admission for custom resources, as kube-apiserver does it from a CRD's openAPIV3Schema.

Order as in the real server: default, prune unknown fields, validate the structural schema
(types, required, patterns, enums, bounds; via jsonschema), check list-map key uniqueness,
then evaluate `x-kubernetes-validations` CEL rules (via cel-python), with `oldSelf` bound on
updates for transition rules. Errors carry the field path the real server would name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import celpy
import celpy.adapter
import jsonschema

MISSING = object()


@dataclass(frozen=True)
class FieldError:
    field: str
    kind: str  # "Invalid", "Required", "Duplicate", "Unsupported value", ...
    value: Any
    detail: str

    def __str__(self) -> str:
        if self.detail == RULES_NOT_CHECKED:
            return f"{self.field}: {self.kind}: null: {self.detail}"  # kube-apiserver: null, unquoted
        if self.kind == "Required":
            return f"{self.field}: Required value" + (f": {self.detail}" if self.detail else "")
        if self.kind == "Duplicate":
            return f"{self.field}: Duplicate value: {json.dumps(self.value, separators=(',', ':'))}"
        shown = (
            json.dumps(self.value)
            if isinstance(self.value, str | int | float | bool)
            else f'"{_type_name(self.value)}"'
        )
        return f"{self.field}: {self.kind}: {shown}: {self.detail}"


def admit(
    schema: Mapping[str, Any],
    obj: dict[str, Any],
    old: Mapping[str, Any] | None,
    unknown: list[str] | None = None,
) -> list[FieldError]:
    """Default and prune `obj` in place, then return every validation error (empty: admitted).
    The paths of the fields pruned (not in the schema) are added to `unknown`."""
    apply_defaults(schema, obj)
    prune(schema, obj, root=True, pruned=unknown)
    errors = structural_errors(schema, obj)
    if errors:
        # CEL rules are only evaluated on schema-valid objects, and the server says so.
        if has_rules(schema):
            errors.append(FieldError("<nil>", "Invalid value", None, RULES_NOT_CHECKED))
        return errors
    errors += list_map_errors(schema, obj, "")
    errors += cel_errors(schema, obj, old if old is not None else MISSING, "")
    return errors


RULES_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


def has_rules(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        return bool(schema.get("x-kubernetes-validations")) or any(has_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_rules(v) for v in schema)
    return False


# --- defaulting and pruning ----------------------------------------------------------------------


def apply_defaults(schema: Mapping[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for item in value.values():
                apply_defaults(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            apply_defaults(schema["items"], item)


def prune(
    schema: Mapping[str, Any], value: Any, root: bool = False, pruned: list[str] | None = None, path: str = ""
) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        if properties is not None and not preserve and extra is None:
            keep = set(properties) | ({"apiVersion", "kind", "metadata"} if root else set())
            for key in [k for k in value if k not in keep]:
                del value[key]
                if pruned is not None:
                    pruned.append(_join(path, key))
        for key, item in value.items():
            if properties and key in properties:
                prune(properties[key], item, pruned=pruned, path=_join(path, key))
            elif isinstance(extra, Mapping):
                prune(extra, item, pruned=pruned, path=_join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            prune(schema["items"], item, pruned=pruned, path=f"{path}[{index}]")


# --- the structural schema -----------------------------------------------------------------------


def structural_errors(schema: Mapping[str, Any], obj: Any) -> list[FieldError]:
    validator = jsonschema.Draft7Validator(_json_schema(schema))
    errors = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        field = _field_path(error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            errors.append(FieldError(_join(field, missing), "Required", None, ""))
        elif error.validator == "enum":
            allowed = ", ".join(json.dumps(v) for v in error.validator_value)
            errors.append(
                FieldError(field, "Unsupported value", error.instance, f"supported values: {allowed}")
            )
        else:
            errors.append(in_the_servers_words(field, error))
    return errors


JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}


def in_the_servers_words(field: str, error: jsonschema.ValidationError) -> FieldError:
    """kube-apiserver's messages for the common schema errors (its words, not jsonschema's)."""
    value, limit = error.instance, error.validator_value
    if error.validator == "type":
        actual = JSON_TYPES.get(type(value), "null")
        return FieldError(
            field, "Invalid value", actual, f'{field} in body must be of type {limit}: "{actual}"'
        )
    words = {
        "minItems": f"should have at least {limit} items",
        "maxItems": f"should have at most {limit} items",
        "minLength": f"should be at least {limit} chars long",
        "maxLength": f"should be at most {limit} chars long",
        "pattern": f"should match '{limit}'",
        "minimum": f"should be greater than or equal to {limit}",
        "maximum": f"should be less than or equal to {limit}",
    }
    if error.validator in words:
        shown = len(value) if error.validator in ("minItems", "maxItems") else value
        return FieldError(field, "Invalid value", shown, f"{field} in body {words[str(error.validator)]}")
    return FieldError(field, "Invalid value", value, error.message)


@cache
def _json_schema_cached(text: str) -> dict[str, Any]:
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            out = {
                k: strip(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "default"
            }
            if out.get("nullable"):
                out["type"] = [out["type"], "null"] if "type" in out else out.get("type")
            out.pop("nullable", None)
            if out.get("format") in ("int64", "int32"):
                out.pop("format")
            return out
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    result: dict[str, Any] = strip(json.loads(text))
    return result


def _json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    return _json_schema_cached(json.dumps(schema, sort_keys=True))


# --- list-type=map keys --------------------------------------------------------------------------


def list_map_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                errors += list_map_errors(sub, value[name], _join(path, name))
    elif isinstance(value, list):
        items = schema.get("items") or {}
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: set[str] = set()
            for index, item in enumerate(value):
                key = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
                if key in seen:
                    errors.append(
                        FieldError(f"{path}[{index}]", "Duplicate", {k: item.get(k) for k in keys}, "")
                    )
                seen.add(key)
        for index, item in enumerate(value):
            errors += list_map_errors(items, item, f"{path}[{index}]")
    return errors


# --- CEL -----------------------------------------------------------------------------------------

_CEL = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule))


@lru_cache(maxsize=65536)
def _verdict(rule: str, value_json: str, old_json: str | None) -> str | None:
    """None when the rule holds, else why not. A rule is a pure function of self (and oldSelf), so
    its verdict is kept by value: an object written again with its spec unchanged (every status
    write) costs no second evaluation, as compiled CEL costs kube-apiserver next to nothing."""
    activation = {"self": celpy.adapter.json_to_cel(json.loads(value_json))}
    if old_json is not None:
        activation["oldSelf"] = celpy.adapter.json_to_cel(json.loads(old_json))
    try:
        ok = _program(rule).evaluate(activation)
    except Exception as error:  # the real server reports evaluation failures as invalid too
        return f"rule evaluation error: {error}"
    return None if not isinstance(ok, celpy.CELEvalError) and bool(ok) else ""


def cel_errors(schema: Mapping[str, Any], value: Any, old: Any, path: str) -> list[FieldError]:
    # Validation ratcheting (on by default since Kubernetes 1.30): an unchanged value's errors are
    # dropped, so its rules need no evaluation (a status write leaves spec alone); transition
    # rules, which compare with the old value, are still evaluated.
    unchanged = old is not MISSING and value == old
    errors: list[FieldError] = []
    for validation in schema.get("x-kubernetes-validations") or ():
        rule = validation["rule"]
        transition = "oldSelf" in rule
        if (transition and old is MISSING) or (unchanged and not transition):
            continue  # transition rules only apply to updates of an existing value
        old_json = json.dumps(old, sort_keys=True) if transition else None
        verdict = _verdict(rule, json.dumps(value, sort_keys=True), old_json)
        if verdict is not None:
            message = verdict or validation.get("message") or f"failed rule: {rule}"
            errors.append(FieldError(path or "<root>", "Invalid value", value, message))
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = (
                properties.get(key) if key in properties else (extra if isinstance(extra, Mapping) else None)
            )
            if sub is None:
                continue
            old_item = old.get(key, MISSING) if isinstance(old, dict) else MISSING
            errors += cel_errors(sub, item, old_item, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        keys = (
            schema.get("x-kubernetes-list-map-keys")
            if schema.get("x-kubernetes-list-type") == "map"
            else None
        )
        old_by_key = {}
        if keys and isinstance(old, list):
            old_by_key = {json.dumps([o.get(k) for k in keys]): o for o in old if isinstance(o, dict)}
        for index, item in enumerate(value):
            old_item = old_by_key.get(json.dumps([item.get(k) for k in keys]), MISSING) if keys else MISSING
            errors += cel_errors(schema["items"], item, old_item, f"{path}[{index}]")
    return errors


# --- paths ---------------------------------------------------------------------------------------


def _join(path: str, name: str) -> str:
    if not name:
        return path
    return f"{path}.{name}" if path else name


def _field_path(parts: Any) -> str:
    path = ""
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path or "<root>"


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", type(None): "null"}.get(type(value), type(value).__name__)
