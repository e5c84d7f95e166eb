"""A faithful-enough Kubernetes API server for end-to-end tests, built on kmock.

kmock's `KubernetesEmulator` gives the HTTP server, request parsing and API discovery; it
stores objects as plain merged dicts. This subclass replaces the object semantics with the
ones operators depend on:

- server-managed metadata on create (uid, resourceVersion, generation, creationTimestamp);
  resourceVersion bumps on every real change (a no-op write changes nothing, like etcd);
  generation bumps on spec changes only;
- optimistic concurrency: a PUT or merge patch carrying a stale metadata.resourceVersion gets
  409 Conflict; a JSON patch whose `test` op fails gets 422, which is what kube-apiserver
  answers and what Kopf expects;
- status subresource: writes to /status change only status, writes to the main resource
  leave status alone, and status is dropped on create;
- merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch (approximated as
  a merge patch that merges lists of named items, e.g. containers, by name);
- list and watch with label selectors, watch from a resourceVersion (replaying the event log,
  410 Gone when it is too old), timeoutSeconds, finalizers and deletionTimestamp;
- admission for custom resources from their CRDs (see admission.py): creating a CRD object
  registers its resource in discovery, exactly as `kubectl apply -f crds/` does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import copy
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import rendering

from tests.harness import authz, crd_checks, kubectl_support, managed_fields
from tests.harness.admission import admit

EVENT_LOG_LIMIT = 20_000
_DISCOVERY_PATH = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/?$")
# fieldValidation of the request being handled (Strict, Warn, Ignore) and the warnings it makes:
# what the schema prunes is refused (Strict), said in Warning headers (Warn), or dropped silently.
FIELD_VALIDATION: contextvars.ContextVar[str] = contextvars.ContextVar("field_validation", default="Warn")
WARNINGS: contextvars.ContextVar[list[str]] = contextvars.ContextVar("warnings")
SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
EMULATOR_ADMIN = authz.User("admin", (authz.SUPERUSERS,))  # the tests' kubeconfig token, "emulated"
_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?(?:/(status|finalize))?/?$")

Key = tuple[str, str, str]  # group, version, plural
NAMESPACES: Key = ("", "v1", "namespaces")
CRDS: Key = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
# Kinds whose names are DNS labels (63 characters at most).
DNS_LABEL_NAMED = {NAMESPACES, ("", "v1", "services")}
JOBS: Key = ("batch", "v1", "jobs")
WORKLOADS = {("apps", "v1", "deployments"), ("apps", "v1", "statefulsets")}


class ApiStatus(Exception):
    """An error answer in the shape of a metav1.Status."""

    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, dict(details or {})

    def body(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            "details": self.details,
        }


@dataclass(frozen=True)
class Timeout:
    """An injected request timeout. `applied`: the write took effect before time ran out (a
    kube-apiserver 504 says the request "may still be in progress"). `stall`: seconds the server
    sits on its answer, longer than the client waits; 0 answers 504 Timeout at once."""

    applied: bool
    stall: float = 0.0

    def answer(self) -> ApiStatus:
        return ApiStatus(
            504,
            "Timeout",
            "injected: the server was unable to return a response in the time allotted,"
            " but may still be processing the request",
        )


@dataclass
class Watcher:
    key: Key
    namespace: str | None
    selector: Callable[[Mapping[str, str]], bool]
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


@dataclass
class Schema:
    kind: str
    namespaced: bool
    openapi: Mapping[str, Any] | None
    status_subresource: bool
    columns: tuple[Mapping[str, Any], ...] = ()  # a CRD's additionalPrinterColumns, for kubectl get


# --- label selectors -----------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def parse_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """Equality (a=b, a==b, a!=b), set (a in (x,y), a notin (x)) and existence (a, !a) requirements."""
    if not text:
        return lambda labels: True
    requirements: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split_selector(text):
        match = _SET_RE.match(part)
        if match:
            name, op, values = match[1], match[2], {v.strip() for v in match[3].split(",") if v.strip()}
            if op == "in":
                requirements.append(lambda labels, n=name, vs=values: labels.get(n) in vs)
            else:
                requirements.append(lambda labels, n=name, vs=values: labels.get(n) not in vs)
        elif "!=" in part:
            name, value = (s.strip() for s in part.split("!=", 1))
            requirements.append(lambda labels, n=name, v=value: labels.get(n) != v)
        elif "=" in part:
            name, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
            requirements.append(lambda labels, n=name, v=value: labels.get(n) == v)
        elif part.strip().startswith("!"):
            absent = part.strip()[1:]
            requirements.append(lambda labels, n=absent: n not in labels)
        else:
            present = part.strip()
            requirements.append(lambda labels, n=present: n in labels)
    return lambda labels: all(r(labels) for r in requirements)


def _split_selector(text: str) -> Iterator[str]:
    depth, current = 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            yield current
            current = ""
        else:
            current += char
    if current.strip():
        yield current


# --- patches -------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any, named_lists: bool = False) -> Any:
    """RFC 7386; with `named_lists` (strategic merge), lists of objects with a `name` merge item by item."""
    named = isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch)
    if named_lists and named and isinstance(target, list):
        by_name = {i.get("name"): i for i in target if isinstance(i, dict)}
        merged = [merge_patch(by_name.get(i["name"]), i, named_lists) for i in patch]
        names = {i["name"] for i in patch}
        return [*merged, *(copy.deepcopy(i) for i in target if i.get("name") not in names)]
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, named_lists)
    return result


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the server ----------------------------------------------------------------------------------


class Store(dict[tuple[Key, str | None, str], dict[str, Any]]):
    """Every object by (kind, namespace, name), and each kind's objects apart: kube-apiserver keeps
    each resource under its own prefix, so listing Pipelines never reads the Releases."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[Key, dict[tuple[str | None, str], dict[str, Any]]] = collections.defaultdict(dict)

    def __setitem__(self, at: tuple[Key, str | None, str], obj: dict[str, Any]) -> None:
        super().__setitem__(at, obj)
        self.kinds[at[0]][at[1], at[2]] = obj

    def __delitem__(self, at: tuple[Key, str | None, str]) -> None:
        super().__delitem__(at)
        del self.kinds[at[0]][at[1], at[2]]

    def of_kind(self, key: Key) -> dict[tuple[str | None, str], dict[str, Any]]:
        return self.kinds.get(key) or {}

    def of_group(self, group: str) -> list[tuple[Key, str | None, dict[str, Any]]]:
        return [
            (k, ns, obj) for k, objs in self.kinds.items() if k[0] == group for (ns, _), obj in objs.items()
        ]


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    store: Store = attrs.field(factory=Store, init=False)
    schemas: dict[Key, Schema] = attrs.field(factory=dict, init=False)
    event_log: collections.deque[tuple[int, Key, dict[str, Any]]] = attrs.field(
        factory=lambda: collections.deque(maxlen=EVENT_LOG_LIMIT), init=False
    )
    watchers: list[Watcher] = attrs.field(factory=list, init=False)
    change_hooks: list[Callable[[str, Key, dict[str, Any]], None]] = attrs.field(factory=list, init=False)
    fault_hooks: list[Callable[[str, Key, str | None], ApiStatus | Timeout | None]] = attrs.field(
        factory=list, init=False
    )
    write_counts: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    # Watches opened, by (plural, resumed from a resourceVersion): a client that relists shows as not resumed.
    watch_counts: collections.Counter[tuple[str, bool]] = attrs.field(factory=collections.Counter, init=False)
    authz: authz.Authz = attrs.field(factory=authz.Authz, init=False)
    revision: int = attrs.field(default=1000, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        for key, info in list(self._resource_items()):
            if info.kind:
                self.schemas[key] = Schema(
                    info.kind, bool(info.namespaced), None, "status" in info.subresources
                )
        for namespace in ("default", "kube-system", "kube-public"):  # what every cluster has
            self.create(NAMESPACES, None, {"metadata": {"name": namespace}})

    def _resource_items(self) -> Iterator[tuple[Key, Any]]:
        for resource in self.resources:
            yield (
                (resource.group or "", resource.version or "", resource.plural or ""),
                self.resources[resource],
            )

    # --- HTTP entry ------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's path parser reads "/api/v1/namespaces" as "a namespace with no name" and fails;
        # Namespaces are cluster-scoped objects like any other, so parse those paths here.
        if raw_request.path.startswith("/openapi/v3"):
            return self._openapi(raw_request.path)
        if raw_request.path.rstrip("/") == SELF_SUBJECT_REVIEWS and raw_request.method == "POST":
            return self._self_subject_review(raw_request)
        match = _NAMESPACE_PATH.match(raw_request.path)
        if match is None:
            response = await super().__call__(raw_request)
            if _DISCOVERY_PATH.match(raw_request.path) and isinstance(response, aiohttp.web.Response):
                return as_kube_apiserver_lists_resources(response)
            return response
        body = await raw_request.read()
        request = rendering.Request(
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            resource=kmock.resource("", "v1", "namespaces"),
            name=match[1],
            subresource=match[2],
        )
        return await self._handle(request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is None or not resource.plural:
            return await super()._handle(request)  # discovery, /version, ...
        key: Key = (resource.group or "", resource.version or "", resource.plural)
        try:
            if key not in self.schemas:
                raise ApiStatus(
                    404, "NotFound", f"the server could not find the requested resource ({key[2]})"
                )
            method = str(request.method.value).upper()
            user = self._authorize(request, key, method)
            timeout: Timeout | None = None
            for hook in self.fault_hooks:
                fault = hook(method, key, request.name)
                if isinstance(fault, ApiStatus):
                    raise fault
                timeout = timeout or fault
            if timeout is not None and not timeout.applied:
                await asyncio.sleep(timeout.stall)
                raise timeout.answer()
            params = dict(request.params)
            if method == "GET" and params.get("watch") in ("true", "1"):
                return await self._watch(request, key, params)
            content_type = {k.lower(): v for k, v in request.headers.items()}.get("content-type", "")
            if request.body and "protobuf" in content_type:  # kubectl create ns sends protobuf
                raise ApiStatus(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format: {content_type}",
                )
            body = strict_json(request.body) if request.body else None
            if user is not None and method in ("POST", "PUT", "PATCH"):
                self._check_policies(key, request, method, body, user)
            if params.get("dryRun") == "All" and method == "POST":
                # Authorised and admitted above; a dry run stores nothing and tells no watcher.
                return aiohttp.web.json_response(body, status=201)
            FIELD_VALIDATION.set(params.get("fieldValidation") or "Warn")  # the server's default
            managed_fields.MANAGER.set(managed_fields.manager_of(params, request.headers))
            warnings: list[str] = []
            WARNINGS.set(warnings)
            result = self._dispatch(method, key, request, body, params)
            if timeout is not None:  # applied, but the client never learns it
                await asyncio.sleep(timeout.stall)
                raise timeout.answer()
            answer = result[1]
            accept = {k.lower(): v for k, v in request.headers.items()}.get("accept")
            if method == "GET" and not request.subresource and kubectl_support.wants_table(accept):
                answer = kubectl_support.as_table(answer, self.schemas[key].columns)
            response = aiohttp.web.json_response(answer, status=result[0])
            for warning in warnings:  # fieldValidation=Warn: kubectl prints them
                response.headers.add("Warning", warning)
            return response
        except ApiStatus as status:
            return aiohttp.web.json_response(status.body(), status=status.code)

    def _self_subject_review(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """`kubectl auth whoami`: who the bearer token is. Its body says nothing (kubectl sends it
        as protobuf), so it is not read. The tests' own token is the emulator's administrator."""
        user = self.authz.user(raw_request.headers.get("Authorization")) or EMULATOR_ADMIN
        review = {
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": now_rfc3339()},
            "status": {"userInfo": {"username": user.name, "groups": [*user.groups, "system:authenticated"]}},
        }
        return aiohttp.web.json_response(review, status=201)

    def _openapi(self, path: str) -> aiohttp.web.StreamResponse:
        """What `kubectl apply` asks before it validates (tests.harness.kubectl_support)."""
        kinds = {key: (s.kind, s.namespaced, s.openapi) for key, s in self.schemas.items()}
        wanted = path.removeprefix("/openapi/v3").strip("/")
        if not wanted:
            return aiohttp.web.json_response(kubectl_support.openapi_root(kinds))
        parts = wanted.split("/")
        group, version = (
            ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2] if len(parts) > 2 else "")
        )
        if not any((g, v) == (group, version) for g, v, _ in kinds):
            return aiohttp.web.json_response(ApiStatus(404, "NotFound", "not found").body(), status=404)
        return aiohttp.web.json_response(kubectl_support.openapi_document(kinds, group, version))

    def _authorize(self, request: rendering.Request, key: Key, method: str) -> authz.User | None:
        if not self.authz.enabled:
            return None
        headers = {k.lower(): v for k, v in request.headers.items()}
        user = self.authz.user(headers.get("authorization"))
        if user is None:
            raise ApiStatus(401, "Unauthorized", "Unauthorized")
        user = self._impersonated(user, request)
        watch = dict(request.params).get("watch") in ("true", "1")
        verb = authz.verb_of(method, request.name, watch)
        resource = key[2] + (f"/{request.subresource}" if request.subresource else "")
        rbac = [(k[2], ns, obj) for k, ns, obj in self.store.of_group(authz.RBAC)]
        if not authz.allowed(rbac, user, verb, key[0], resource, request.namespace, request.name):
            raise ApiStatus(
                403, "Forbidden", authz.forbidden_message(user, verb, key[0], resource, request.namespace)
            )
        return user

    def _impersonated(self, user: authz.User, request: rendering.Request) -> authz.User:
        """Impersonate-User and Impersonate-Group, as kube-apiserver takes them: the requester
        needs the impersonate verb on each user and group named, and is then that user."""
        raw = request._raw_request
        assert raw is not None
        wanted = raw.headers.get("Impersonate-User")
        if not wanted:
            return user
        groups = tuple(raw.headers.getall("Impersonate-Group", ()))
        rbac = [(k[2], ns, obj) for k, ns, obj in self.store.of_group(authz.RBAC)]
        for resource, name in [("users", wanted), *(("groups", g) for g in groups)]:
            if not authz.allowed(rbac, user, "impersonate", "", resource, None, name):
                raise ApiStatus(
                    403,
                    "Forbidden",
                    f'{resource} "{name}" is forbidden: User "{user.name}" cannot impersonate resource '
                    f'"{resource}" in API group "" at the cluster scope',
                )
        return authz.User(wanted, (*groups, "system:authenticated"))

    def _check_policies(
        self, key: Key, request: rendering.Request, method: str, body: Any, user: authz.User
    ) -> None:
        if request.subresource or not isinstance(body, dict) or method == "PATCH":
            return  # policies here are about what people create and replace, not about status
        operation = "CREATE" if method == "POST" else "UPDATE"
        old = self.store.get((key, request.namespace, request.name)) if request.name else None
        objects = {
            k[2]: list(self.store.of_kind(k).values())
            for k in [
                (authz.ADMISSION, "v1", "validatingadmissionpolicies"),
                (authz.ADMISSION, "v1", "validatingadmissionpolicybindings"),
            ]
        }
        rbac = [(k[2], ns, obj) for k, ns, obj in self.store.of_group(authz.RBAC)]
        denials = authz.policy_denials(
            objects["validatingadmissionpolicies"],
            objects["validatingadmissionpolicybindings"],
            operation,
            key[0],
            key[1],
            key[2],
            body,
            old,
            user,
            namespace=request.namespace,
            rbac=rbac,
        )
        if denials:
            name = (body.get("metadata") or {}).get("name", "")
            raise ApiStatus(422, "Invalid", f'{key[2]}.{key[0]} "{name}" is invalid: {"; ".join(denials)}')

    def _dispatch(
        self, method: str, key: Key, request: rendering.Request, body: Any, params: Mapping[str, str]
    ) -> tuple[int, Any]:
        namespace, name, sub = request.namespace, request.name, request.subresource
        if method == "GET" and name is None:
            return 200, self.list_objects(
                key, namespace, params.get("labelSelector"), params.get("fieldSelector")
            )
        if method == "GET":
            return 200, self.get_object(key, namespace, name)
        if method == "POST" and name is None:
            return 201, self.create(key, namespace, body)
        if method == "PUT" and name is not None:
            return 200, self.replace(key, namespace, name, body, sub)
        if method == "PATCH" and name is not None:
            content_type = request.headers.get("Content-Type", "application/merge-patch+json").split(";")[0]
            return 200, self.patch(key, namespace, name, body, content_type, sub)
        if method == "DELETE" and name is not None:
            return 200, self.delete(key, namespace, name)
        raise ApiStatus(405, "MethodNotAllowed", f"{method} is not supported on this path")

    # --- reads -----------------------------------------------------------------------------------

    def get_object(self, key: Key, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get((key, namespace, name))
        if obj is None:
            raise ApiStatus(
                404,
                "NotFound",
                f'{key[2]}.{key[0] or "core"} "{name}" not found',
                {"name": name, "kind": key[2]},
            )
        return copy.deepcopy(obj)

    def list_objects(
        self,
        key: Key,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        matches = parse_selector(label_selector)
        fields = dict(
            p.replace("==", "=").split("=", 1) for p in (field_selector or "").split(",") if "=" in p
        )
        items = []
        for (ns, _name), obj in sorted(
            self.store.of_kind(key).items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
        ):
            if namespace is not None and ns != namespace:
                continue
            if not matches(obj["metadata"].get("labels") or {}):
                continue
            if any(str(_field_value(obj, path) or "") != wanted for path, wanted in fields.items()):
                continue
            items.append(copy.deepcopy(obj))
        kind = self.schemas[key].kind
        return {
            "apiVersion": _api_version(key),
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self.revision)},
            "items": items,
        }

    # --- writes ----------------------------------------------------------------------------------

    def create(self, key: Key, namespace: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body of the request was not a JSON object")
        schema = self.schemas[key]
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            # kube-apiserver keeps at most 58 characters of the prefix, then adds 5 random ones
            meta["name"] = meta["generateName"][:58] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiStatus(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        longest = 63 if key in DNS_LABEL_NAMED else 253  # as kube-apiserver validates names
        if len(name) > longest:
            raise ApiStatus(
                422,
                "Invalid",
                f'{_qualified(key, schema.kind)} "{name}" is invalid: metadata.name: Invalid value: '
                f'"{name}": must be no more than {longest} characters',
            )
        if key == JOBS and len(name.encode()) > 63:
            # kube-apiserver puts a Job's name into its Pod template's labels (job-name), and a
            # label value is 63 bytes at most: that is the error it answers with.
            raise ApiStatus(
                422,
                "Invalid",
                f'Job.batch "{name}" is invalid: spec.template.labels: Invalid value: "{name}": '
                "must be no more than 63 bytes",
            )
        if schema.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            meta["namespace"] = namespace
            if (NAMESPACES, None, namespace) not in self.store:  # as kube-apiserver refuses it
                raise ApiStatus(
                    404,
                    "NotFound",
                    f'namespaces "{namespace}" not found',
                    {"name": namespace, "kind": "namespaces"},
                )
        else:
            namespace = None
        if (key, namespace, name) in self.store:
            raise ApiStatus(
                409, "AlreadyExists", f'{key[2]}.{key[0] or "core"} "{name}" already exists', {"name": name}
            )
        if schema.status_subresource:
            obj.pop("status", None)
        obj.setdefault("apiVersion", _api_version(key))
        obj.setdefault("kind", schema.kind)
        self._admit(key, obj, None)
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=now_rfc3339(),
            generation=1,
        )
        for server_owned in ("resourceVersion", "deletionTimestamp"):
            meta.pop(server_owned, None)
        managed_fields.created(obj, meta["creationTimestamp"])
        if key == CRDS:
            obj["status"] = self._name_crd(obj)
        self._commit("ADDED", key, namespace, name, obj)
        if key == CRDS and _established(obj):
            self.register_crd(obj)
        return copy.deepcopy(obj)

    def replace(
        self, key: Key, namespace: str | None, name: str, body: Any, sub: str | None
    ) -> dict[str, Any]:
        old = self.get_object(key, namespace, name)
        wanted = body.get("metadata", {}).get("resourceVersion") if isinstance(body, dict) else None
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise self._conflict(key, name)
        return self._update(key, namespace, name, old, copy.deepcopy(body), sub)

    def patch(
        self, key: Key, namespace: str | None, name: str, body: Any, content_type: str, sub: str | None
    ) -> dict[str, Any]:
        old = self.get_object(key, namespace, name)
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiStatus(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                new = jsonpatch.apply_patch(old, body)
            except jsonpatch.JsonPatchTestFailed as error:
                raise ApiStatus(
                    422, "Invalid", f"the server rejected our request due to an error: {error}"
                ) from None
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                raise ApiStatus(
                    422, "Invalid", f"the server rejected our request due to an error: {error}"
                ) from None
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise ApiStatus(400, "BadRequest", "a merge patch must be a JSON object")
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise self._conflict(key, name)
            new = merge_patch(old, body, named_lists=content_type != "application/merge-patch+json")
        else:
            raise ApiStatus(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        return self._update(key, namespace, name, old, new, sub)

    def delete(self, key: Key, namespace: str | None, name: str) -> dict[str, Any]:
        old = self.get_object(key, namespace, name)
        if old["metadata"].get("finalizers"):
            if not old["metadata"].get("deletionTimestamp"):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
                self._commit("MODIFIED", key, namespace, name, new)
                return copy.deepcopy(new)
            return old
        del self.store[(key, namespace, name)]
        self._commit("DELETED", key, namespace, name, old, store=False)
        return {"apiVersion": "v1", "kind": "Status", "status": "Success", "details": {"name": name}}

    def _update(
        self, key: Key, namespace: str | None, name: str, old: dict[str, Any], new: Any, sub: str | None
    ) -> dict[str, Any]:
        if not isinstance(new, dict):
            raise ApiStatus(400, "BadRequest", "the body of the request was not a JSON object")
        schema = self.schemas[key]
        if sub == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif sub is not None:
            raise ApiStatus(404, "NotFound", f"subresource {sub} is not served")
        else:
            if schema.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for immutable in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp"):
                if immutable in old["metadata"]:
                    meta[immutable] = old["metadata"][immutable]
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        new["metadata"]["generation"] = old["metadata"].get("generation", 1)
        managed_fields.kept(old, new)
        if key in WORKLOADS and sub is None:
            managed_fields.record(old, new, now_rfc3339())
        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event
        self._admit(key, new, old)
        if _spec_of(new) != _spec_of(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self.store[(key, namespace, name)]
            self._commit("DELETED", key, namespace, name, new, store=False)
            return copy.deepcopy(new)
        self._commit("MODIFIED", key, namespace, name, new)
        if key == CRDS and sub is None and _established(new):
            self.register_crd(new)  # a served CRD's new schema (and columns) apply at once
        return copy.deepcopy(new)

    def _admit(self, key: Key, obj: dict[str, Any], old: Mapping[str, Any] | None) -> None:
        schema = self.schemas[key]
        _check_labels(_qualified(key, schema.kind), obj)
        if key == CRDS:
            _check_crd_rules(obj)
        if key in WORKLOADS:
            _check_replica_counts(_qualified(key, schema.kind), obj)
        if schema.openapi is None:
            return
        unknown: list[str] = []
        errors = admit(schema.openapi, obj, old, unknown)
        if unknown and FIELD_VALIDATION.get() == "Strict":
            version = _api_version(key).rsplit("/", 1)[-1]
            said = ", ".join(f'unknown field "{f}"' for f in sorted(unknown))
            raise ApiStatus(
                400,
                "BadRequest",
                f'{schema.kind} in version "{version}" cannot be handled as a {schema.kind}: '
                f"strict decoding error: {said}",
            )
        said_to = WARNINGS.get(None)  # None: not over HTTP (a test seeding the store)
        if unknown and FIELD_VALIDATION.get() == "Warn" and said_to is not None:
            said_to.extend(f'299 - "unknown field \\"{f}\\""' for f in sorted(unknown))
        if errors:
            name = obj.get("metadata", {}).get("name", "")
            problems = [(e.field, str(e)) for e in errors]
            raise _invalid(
                schema.kind, key[0], name, problems, [CAUSES.get(e.kind, "FieldValueInvalid") for e in errors]
            )

    def _conflict(self, key: Key, name: str) -> ApiStatus:
        return ApiStatus(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {key[2]}.{key[0]} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            {"name": name},
        )

    def _commit(
        self, kind: str, key: Key, namespace: str | None, name: str, obj: dict[str, Any], store: bool = True
    ) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        old = self.store.get((key, namespace, name)) if kind == "MODIFIED" else None
        if store:
            self.store[(key, namespace, name)] = obj
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self.event_log.append((self.revision, key, event))
        self.write_counts[key[2]] += 1
        old_labels = (old or {}).get("metadata", {}).get("labels") or {}
        for watcher in self.watchers:
            if watcher.key != key or watcher.namespace not in (None, namespace):
                continue
            matches = watcher.selector(obj["metadata"].get("labels") or {})
            matched = old is None or watcher.selector(old_labels)
            # As kube-apiserver's watch cache does: an object entering a watch's label selector
            # arrives as ADDED, one leaving it as DELETED (it is still there, just not watched).
            if matches and not matched:
                watcher.queue.put_nowait({**event, "type": "ADDED"})
            elif matched and not matches and old is not None:
                watcher.queue.put_nowait({**event, "type": "DELETED"})
            elif matches:
                watcher.queue.put_nowait(event)
        for hook in self.change_hooks:
            hook(kind, key, obj)

    # --- watch -----------------------------------------------------------------------------------

    async def _watch(
        self, request: rendering.Request, key: Key, params: Mapping[str, str]
    ) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        selector = parse_selector(params.get("labelSelector"))
        watcher = Watcher(key, request.namespace, selector)
        since = params.get("resourceVersion")
        self.watch_counts[(key[2], bool(since and since != "0"))] += 1
        backlog: list[dict[str, Any]] = []
        if since and since != "0":
            oldest = self.event_log[0][0] if self.event_log else self.revision
            if int(since) < oldest - 1:
                gone = ApiStatus(410, "Expired", f"too old resource version: {since} ({oldest})")
                backlog.append({"type": "ERROR", "object": gone.body()})
            else:
                for revision, k, event in self.event_log:
                    if (
                        revision > int(since)
                        and k == key
                        and watcher.namespace in (None, event["object"]["metadata"].get("namespace"))
                    ) and selector(event["object"]["metadata"].get("labels") or {}):
                        backlog.append(event)
        else:
            listing = self.list_objects(key, request.namespace, params.get("labelSelector"))
            backlog = [{"type": "ADDED", "object": obj} for obj in listing["items"]]
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        self.watchers.append(watcher)
        timeout = float(params.get("timeoutSeconds") or 0) or None
        accept = {k.lower(): v for k, v in request.headers.items()}.get("accept")
        tables = kubectl_support.wants_table(accept)  # kubectl get -w: each object as a one-row Table

        def line(event: Mapping[str, Any]) -> bytes:
            if tables and event["type"] != "ERROR":
                event = {
                    **event,
                    "object": kubectl_support.as_table(event["object"], self.schemas[key].columns),
                }
            return json.dumps(event).encode() + b"\n"

        try:
            for event in backlog:
                await response.write(line(event))
            if backlog and backlog[-1]["type"] == "ERROR":
                return response
            async with asyncio.timeout(timeout):
                while True:
                    event = await watcher.queue.get()
                    await response.write(line(event))
        except (TimeoutError, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.remove(watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    # --- CRDs ------------------------------------------------------------------------------------

    def _name_crd(self, crd: Mapping[str, Any]) -> dict[str, Any]:
        """kube-apiserver's naming controller: a CRD whose names another CRD of its group holds is
        stored, but not Established, and its kind is not served."""
        others = list(self.store.of_kind(CRDS).values())
        verdict = crd_checks.naming(crd, others)
        spec = crd["spec"]
        stored = [v["name"] for v in spec.get("versions") or () if v.get("storage")]
        return verdict.status(spec["names"], stored)

    def register_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            key = (spec["group"], version["name"], names["plural"])
            subresources = set(version.get("subresources") or {})
            self.resources[f"{spec['group']}/{version['name']}/{names['plural']}"] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular"),
                namespaced=spec.get("scope") == "Namespaced",
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                shortnames=set(names.get("shortNames") or ()),
                categories=set(names.get("categories") or ()),
                subresources=subresources,
            )
            openapi = (version.get("schema") or {}).get("openAPIV3Schema")
            self.schemas[key] = Schema(
                names["kind"],
                spec.get("scope") == "Namespaced",
                openapi,
                "status" in subresources,
                tuple(version.get("additionalPrinterColumns") or ()),
            )

    # --- for tests playing controllers -----------------------------------------------------------

    def write_status(self, key: Key, namespace: str | None, name: str, status: Mapping[str, Any]) -> None:
        """What a controller (kubelet, deployment controller, job controller) does: set status."""
        old = self.store.get((key, namespace, name))
        if old is None:
            return
        new = copy.deepcopy(old)
        new["status"] = merge_patch(old.get("status") or {}, dict(status))
        self._update(key, namespace, name, copy.deepcopy(old), new, "status")


def as_kube_apiserver_lists_resources(response: aiohttp.web.Response) -> aiohttp.web.Response:
    """kmock's discovery, corrected where kube-apiserver differs and kubectl cares: the core group's
    groupVersion is "v1" (kmock says "/v1", so `kubectl apply` finds no kind "Namespace" in "v1"),
    and subresources (deployments/status) carry no short names (else `kubectl get deploy` warns)."""
    try:
        listing = json.loads(response.body or b"")  # type: ignore[arg-type]
    except ValueError:
        return response
    if not isinstance(listing, dict) or listing.get("kind") != "APIResourceList":
        return response
    listing["groupVersion"] = str(listing.get("groupVersion", "")).lstrip("/")
    for resource in listing.get("resources") or ():
        if "/" in resource.get("name", ""):
            resource.pop("shortNames", None)
            resource.pop("categories", None)
    return aiohttp.web.json_response(listing, status=response.status)


def _established(crd: Mapping[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _check_crd_rules(crd: Mapping[str, Any]) -> None:
    """Refuse a CRD whose CEL rules kube-apiserver would find over its cost budget."""
    errors = crd_checks.schema_errors(crd)
    if errors:
        name = (crd.get("metadata") or {}).get("name", "")
        problems = [(e.split(":", 1)[0], e) for e in errors]
        raise _invalid(
            "CustomResourceDefinition", "apiextensions.k8s.io", name, problems, "FieldValueForbidden"
        )


# A field error's kind, as the cause's reason kube-apiserver gives it (metav1.CauseType).
CAUSES = {
    "Invalid value": "FieldValueInvalid",
    "Required": "FieldValueRequired",
    "Duplicate": "FieldValueDuplicate",
    "Unsupported value": "FieldValueNotSupported",
    "Forbidden": "FieldValueForbidden",
}


def _invalid(
    kind: str, group: str, name: str, problems: list[tuple[str, str]], cause: str | list[str]
) -> ApiStatus:
    """kube-apiserver's 422 for field errors: `Kind.group "name" is invalid: <one, or [a, b]>`, with
    one cause per (field, message). A cause's message does not repeat its field (kubectl prints
    `field: message` from the causes: a repeated one read `spec.x: spec.x: …`)."""
    messages = [message for _, message in problems]
    text = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    reasons = cause if isinstance(cause, list) else [cause] * len(problems)
    return ApiStatus(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {text}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": reason, "message": message.removeprefix(f"{field}: "), "field": field}
                for (field, message), reason in zip(problems, reasons, strict=True)
            ],
        },
    )


def _api_version(key: Key) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


def _spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what bumps generation when it changes."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _check_replica_counts(kind: str, obj: Mapping[str, Any]) -> None:
    """A workload's status counts as kube-apiserver validates them (a controller that writes
    more available than ready replicas is refused, not believed)."""
    status = obj.get("status") or {}
    counts = {
        k: status.get(k) or 0 for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    }
    problems = [
        f"status.{field}: Invalid value: {counts[field]}: cannot be greater than status.replicas"
        for field in ("updatedReplicas", "readyReplicas", "availableReplicas")
        if counts[field] > counts["replicas"]
    ]
    if counts["availableReplicas"] > counts["readyReplicas"]:
        problems.append(
            f"status.availableReplicas: Invalid value: {counts['availableReplicas']}: "
            "cannot be greater than readyReplicas"
        )
    if problems:
        name = (obj.get("metadata") or {}).get("name", "")
        text = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise ApiStatus(422, "Invalid", f'{kind} "{name}" is invalid: {text}')


def _qualified(key: Key, kind: str) -> str:
    """How kube-apiserver names a kind in its errors: Job.batch, ConfigMap (the core group bare)."""
    return f"{kind}.{key[0]}" if key[0] else kind


def _check_labels(kind: str, obj: Mapping[str, Any]) -> None:
    """Label values as kube-apiserver validates them, for every kind: 63 bytes at most."""
    name = (obj.get("metadata") or {}).get("name", "")
    for value in ((obj.get("metadata") or {}).get("labels") or {}).values():
        problem = None
        if not isinstance(value, str):
            problem = "must be a string"
        elif len(value.encode()) > 63:
            problem = "must be no more than 63 bytes"
        elif not LABEL_VALUE.match(value):
            problem = (
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"
            )
        if problem is not None:
            raise ApiStatus(
                422,
                "Invalid",
                f'{kind} "{name}" is invalid: metadata.labels: Invalid value: "{value}": {problem}',
            )


def strict_json(raw: Any) -> Any:
    """JSON as kube-apiserver reads it: NaN and Infinity are not JSON, and the request is refused."""

    def refuse(constant: str) -> Any:
        raise ApiStatus(
            400,
            "BadRequest",
            f"the body of the request was in an unknown format: invalid character '{constant[0]}' "
            "looking for beginning of value",
        )

    return json.loads(raw, parse_constant=refuse)


def _field_value(obj: Mapping[str, Any], path: str) -> Any:
    """A field selector's field (metadata.name, involvedObject.name, ...) in an object."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
