"""The Kubernetes API, as Gantry uses it: a few verbs over plain JSON.

Built on the official client's ApiClient (auth, TLS and kubeconfig handling) but speaking raw
paths, because Gantry needs exact control of patch content types (merge vs JSON patch with
`test` ops) and of resourceVersion preconditions, which the typed wrappers hide.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from urllib3 import HTTPHeaderDict

from gantry.domain.inputs.workloads import FIELD_MANAGER

log = logging.getLogger(__name__)

GROUP = "gantry.dev"
VERSION = "v1alpha1"
FINALIZER = f"{GROUP}/finalizer"  # Kopf's, while a Release has a driver (handlers.releases)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


class ApiError(Exception):
    """A non-2xx answer from the API server, with the server's own reason and message."""

    def __init__(
        self, status: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = dict(details or {})  # the Status's details: e.g. one cause per field refused

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def transient(self) -> bool:
        """Worth retrying as is: conflicts, throttling, server trouble."""
        return self.status in (409, 429) or self.status >= 500

    @property
    def not_found(self) -> bool:
        return self.status == 404


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> k8s_client.Configuration:
    """In-cluster credentials when running in a Pod, the kubeconfig otherwise (as kubectl does).
    An explicit `kubeconfig` or `context` (kubectl's --kubeconfig, --context) means the kubeconfig.

    KUBECONFIG is read now, not when the kubernetes package was imported, and the result is a
    private Configuration rather than the process-wide default.
    """
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig or context:
            raise k8s_config.ConfigException("a kubeconfig was asked for")
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
            context=context,
            client_configuration=configuration,
        )
    return configuration


# What a client sees when nothing answers at the API server's address (refused, no route, a TLS
# handshake that fails, a timeout): urllib3's errors, and the OS's beneath them.
UNREACHABLE: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)


def unreachable(host: str, error: BaseException) -> str:
    """One line for a person: which API server could not be reached, and why in a few words."""
    said = str(getattr(error, "reason", None) or error)
    reason = said.rsplit(": ", 1)[-1]  # "…: [Errno 111] Connection refused" -> its last clause
    return f"cannot reach the API server at {host} ({reason})"


def no_cluster(error: BaseException) -> str:
    """One line for a kubeconfig that cannot be used: a KUBECONFIG naming no file is said as such."""
    named = os.environ.get("KUBECONFIG")
    missing = [path for path in (named or "").split(os.pathsep) if path and not os.path.exists(path)]
    if named and len(missing) == len(named.split(os.pathsep)):
        return (
            f"KUBECONFIG={named}: no such file; point it at a kubeconfig, or unset it to use ~/.kube/config"
        )
    return f"no cluster configured ({error}); set KUBECONFIG or use kubectl config use-context"


def load_api_client(
    connections: int = 10,
    kubeconfig: str | None = None,
    context: str | None = None,
    retries: int | None = None,
) -> k8s_client.ApiClient:
    """`connections`: one per handler thread, so concurrent handlers never queue for a socket.
    `retries=0` for a command a person runs: one answer, not three retries' warnings before it."""
    configuration = load_configuration(kubeconfig, context)
    configuration.connection_pool_maxsize = max(connections, 1)
    if retries is not None:
        configuration.retries = retries
    api = k8s_client.ApiClient(configuration)
    # The API server names a request's field manager after its User-Agent: Gantry's writes are
    # "gantry" in managedFields, so a fight with another controller can name both sides.
    api.user_agent = f"{FIELD_MANAGER}/0.1"
    return api


def segment(text: str) -> str:
    """One path segment: every character that could end or climb out of it is escaped ('/'
    included), and '.' and '..' (which an HTTP client or proxy would resolve) are refused. No
    Kubernetes name is either; a name from outside that is must never reach a path."""
    if text in ("", ".", ".."):
        raise ValueError(f"{text!r} is not a Kubernetes name")
    return quote(text, safe="")


def label_selector(labels: Mapping[str, str]) -> str:
    """`matchLabels` as a list request's labelSelector."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def custom_path(plural: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{segment(namespace)}/{plural}"
    if name is not None:
        path += f"/{segment(name)}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def core_path(plural: str, namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{segment(namespace)}/{plural}"
    return f"{path}/{segment(name)}" if name is not None else path


def workload_path(kind: str, namespace: str, name: str | None = None) -> str:
    path = f"/apis/apps/v1/namespaces/{segment(namespace)}/{WORKLOAD_PLURALS[kind]}"
    return f"{path}/{segment(name)}" if name is not None else path


def job_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/batch/v1/namespaces/{segment(namespace)}/jobs"
    return f"{path}/{segment(name)}" if name is not None else path


class Kube:
    """Synchronous JSON verbs; the operator calls them from Kopf's worker threads."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        timeout: float = 30.0,
        impersonate: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.impersonate = impersonate  # (user, groups): every request as that person (web view)

    def as_user(self, user: str, groups: Sequence[str]) -> Kube:
        """The same connection, each request impersonating `user` in `groups`: the API server's
        RBAC and admission policies then judge it as that person's own."""
        return Kube(self.api_client, self.timeout, (user, tuple(groups)))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, serialized, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        sent: Mapping[str, str] = headers
        if self.impersonate is not None:
            user, groups = self.impersonate
            personal = HTTPHeaderDict(headers)  # one Impersonate-Group header per group, as kubectl sends
            personal["Impersonate-User"] = user
            for group in groups:
                personal.add("Impersonate-Group", group)
            sent = personal
        response = self.api_client.call_api(
            method, url, header_params=sent, body=serialized, _request_timeout=self.timeout
        )
        raw = response.read()  # type: ignore[no-untyped-call]
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        if not 200 <= response.status < 300:
            try:
                status = json.loads(text)
                raise ApiError(
                    response.status,
                    status.get("reason", ""),
                    status.get("message", text),
                    status.get("details"),
                )
            except ValueError:
                raise ApiError(response.status, response.reason or "", text) from None
        return json.loads(text) if text else None

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request("GET", path)
            return result
        except ApiError as error:
            if error.not_found:
                return None
            raise

    def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = self.request("GET", path, query=query)
        return list(result.get("items") or [])

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", path, body=dict(body))
        return result

    def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", path, body=dict(body))
        return result

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)
        return result

    def delete(self, path: str, propagation: str = "Background") -> None:
        """Delete, with dependents collected by the garbage collector; already gone is fine."""
        try:
            self.request("DELETE", path, body={"propagationPolicy": propagation})
        except ApiError as error:
            if not error.not_found:
                raise

    def create_unless_exists(self, path: str, body: Mapping[str, Any]) -> bool:
        """Create; False when it exists already (an earlier look made it, or another operator)."""
        try:
            self.create(path, body)
        except ApiError as error:
            if not error.conflict:
                raise
            return False
        return True

    def json_patch(self, path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PATCH", path, body=ops, content_type=JSON_PATCH)
        return result


def self_review(kube: Kube) -> tuple[str, list[str]] | None:
    """Who the API server takes the caller for (SelfSubjectReview): user name and groups, or None
    when it will not say. Kubernetes' own groups (system:…) are left out."""
    try:
        review = kube.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    except ApiError:
        return None
    info = (review.get("status") or {}).get("userInfo") or {}
    if not info.get("username"):
        return None
    groups = [str(g) for g in info.get("groups") or () if not str(g).startswith("system:")]
    return str(info["username"]), groups[:32]
