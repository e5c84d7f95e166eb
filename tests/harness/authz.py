"""Authentication, RBAC authorization and ValidatingAdmissionPolicies for the emulated API server.

Off unless a test turns it on: then bearer tokens map to users and groups, every resource
request is checked against the Roles, ClusterRoles and their bindings stored in the server (as
kube-apiserver's RBAC authorizer does, without aggregation), and ValidatingAdmissionPolicies with
their bindings are evaluated with CEL on create and update, with `request.userInfo` bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
import celpy.adapter
import celpy.celtypes

RBAC = "rbac.authorization.k8s.io"
ADMISSION = "admissionregistration.k8s.io"
SUPERUSERS = "system:masters"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def superuser(self) -> bool:
        return SUPERUSERS in self.groups


# The identities tests act as, by bearer token: the emulator maps them when a test turns RBAC on,
# and the envtest tier's kube-apiserver reads them from its token file (RBAC always enforced).
TEST_USERS = {
    "operator": User(
        "system:serviceaccount:gantry:gantry", ("system:serviceaccounts", "system:serviceaccounts:gantry")
    ),
    "alice": User("alice", ("shop-developers",)),
    "bob": User("bob", ("shop-oncall",)),
    # On-call who also develop: carol writes Releases and approves others'; dave approves.
    "carol": User("carol", ("shop-developers", "shop-oncall")),
    "dave": User("dave", ("shop-oncall",)),
    # Argo CD's application controller, applying what is committed to git.
    "argocd": User(
        "system:serviceaccount:argocd:argocd-application-controller",
        ("system:serviceaccounts", "system:serviceaccounts:argocd"),
    ),
}


@dataclass
class Authz:
    enabled: bool = False
    tokens: dict[str, User] = field(default_factory=dict)

    def user(self, authorization: str | None) -> User | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self.tokens.get(authorization.removeprefix("Bearer ").strip())


def verb_of(method: str, name: str | None, watch: bool) -> str:
    if method == "GET":
        return "watch" if watch else ("get" if name else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def allowed(
    objects: Iterable[tuple[str, str | None, dict[str, Any]]],
    user: User,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
    name: str | None,
) -> bool:
    """objects: (plural, namespace, body) of every RBAC object in the store."""
    if user.superuser:
        return True
    stored = list(objects)
    roles = {(ns, body["metadata"]["name"]): body for plural, ns, body in stored if plural == "roles"}
    cluster_roles = {body["metadata"]["name"]: body for plural, _, body in stored if plural == "clusterroles"}
    for plural, binding_ns, binding in stored:
        if plural not in ("rolebindings", "clusterrolebindings") or not _bound(binding, user):
            continue
        if plural == "rolebindings" and binding_ns != namespace:
            continue
        ref = binding.get("roleRef") or {}
        role = (
            cluster_roles.get(ref.get("name"))
            if ref.get("kind") == "ClusterRole"
            else roles.get((binding_ns, ref.get("name")))
        )
        if role is not None and any(_rule(r, verb, group, resource, name) for r in role.get("rules") or ()):
            return True
    return False


def forbidden_message(user: User, verb: str, group: str, resource: str, namespace: str | None) -> str:
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    qualified = f"{resource}.{group}" if group else resource
    return (
        f'{qualified} is forbidden: User "{user.name}" cannot {verb} resource "{resource}" '
        f'in API group "{group}"{where}'
    )


def _bound(binding: Mapping[str, Any], user: User) -> bool:
    for subject in binding.get("subjects") or ():
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if (
            kind == "ServiceAccount"
            and user.name == f"system:serviceaccount:{subject.get('namespace')}:{name}"
        ):
            return True
    return False


def _rule(rule: Mapping[str, Any], verb: str, group: str, resource: str, name: str | None) -> bool:
    def has(values: Iterable[str], wanted: str) -> bool:
        values = list(values or ())
        return "*" in values or wanted in values

    names = rule.get("resourceNames") or []
    return (
        has(rule.get("verbs") or (), verb)
        and has(rule.get("apiGroups") or (), group)
        and has(rule.get("resources") or (), resource)
        and (not names or (name is not None and name in names))
    )


# --- ValidatingAdmissionPolicy -------------------------------------------------------------------

_CEL = celpy.Environment()


def policy_denials(
    policies: Iterable[dict[str, Any]],
    bindings: Iterable[dict[str, Any]],
    operation: str,
    group: str,
    version: str,
    resource: str,
    obj: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    user: User,
    namespace: str | None = None,
    rbac: Iterable[tuple[str, str | None, dict[str, Any]]] = (),
) -> list[str]:
    bound = {b["spec"]["policyName"] for b in bindings}
    functions = _authorizer_functions(list(rbac), user)
    messages = []
    for policy in policies:
        name = policy["metadata"]["name"]
        spec = policy.get("spec") or {}
        if name not in bound or not _matches(
            spec.get("matchConstraints") or {}, operation, group, version, resource
        ):
            continue
        activation = {
            "object": celpy.adapter.json_to_cel(dict(obj) if obj is not None else None),
            "oldObject": celpy.adapter.json_to_cel(dict(old) if old is not None else None),
            "request": celpy.adapter.json_to_cel(
                {
                    "operation": operation,
                    "namespace": namespace or "",
                    "userInfo": {"username": user.name, "groups": list(user.groups)},
                }
            ),
            "authorizer": celpy.celtypes.MapType({}),
        }
        # spec.variables, in order: each may use the ones before it (as variables.<name>)
        known: dict[Any, Any] = {}
        for variable in spec.get("variables") or ():
            activation["variables"] = celpy.celtypes.MapType(dict(known))
            program = _CEL.program(_CEL.compile(variable["expression"]), functions=functions)
            known[celpy.celtypes.StringType(variable["name"])] = program.evaluate(activation)
        activation["variables"] = celpy.celtypes.MapType(dict(known))
        for validation in spec.get("validations") or ():
            expression = validation["expression"]
            try:
                result = _CEL.program(_CEL.compile(expression), functions=functions).evaluate(activation)
                ok = not isinstance(result, celpy.CELEvalError) and bool(result)
            except Exception as error:
                ok, validation = False, {**validation, "message": f"{expression}: {error}"}
            if not ok:
                message = validation.get("message") or f"failed expression: {expression}"
                messages.append(f"ValidatingAdmissionPolicy '{name}' denied request: {message}")
    return messages


def _authorizer_functions(rbac: list[tuple[str, str | None, dict[str, Any]]], user: User) -> dict[str, Any]:
    """The `authorizer` of admission CEL, as far as policies here use it:
    authorizer.group(g).resource(r).namespace(ns).check(verb).allowed(), asking RBAC about the
    requesting user (groups included), as kube-apiserver asks its authorizer."""
    types = celpy.celtypes

    def with_key(key: str) -> Any:
        return lambda target, value: types.MapType({**target, types.StringType(key): value})

    def allowed_(target: Any) -> Any:
        fields = {str(k): str(v) for k, v in target.items()}
        return types.BoolType(
            allowed(
                rbac,
                user,
                fields.get("verb", ""),
                fields.get("group", ""),
                fields.get("resource", ""),
                fields.get("namespace") or None,
                fields.get("name") or None,
            )
        )

    return {
        "group": with_key("group"),
        "resource": with_key("resource"),
        "namespace": with_key("namespace"),
        "name": with_key("name"),
        "check": with_key("verb"),
        "allowed": allowed_,
    }


def _matches(constraints: Mapping[str, Any], operation: str, group: str, version: str, resource: str) -> bool:
    for rule in constraints.get("resourceRules") or ():

        def has(key: str, wanted: str, rule: Mapping[str, Any] = rule) -> bool:
            values = rule.get(key) or []
            return "*" in values or wanted in values

        if (
            has("apiGroups", group)
            and has("apiVersions", version)
            and has("resources", resource)
            and has("operations", operation)
        ):
            return True
    return False
