"""`helm install` against an API server, in the order and with the checks Helm makes.

What Helm does that a plain `kubectl apply` of the rendered chart does not, and that broke the
chart on a fresh cluster once: it creates the CRDs of the chart's `crds/` directory first (and
only those: a CRD among the templates is an ordinary object), then maps *every* template object
to an API resource through discovery before it creates any, so a template object whose kind
comes from a CRD in the same templates fails the whole install. Then it creates the objects in
its install order (by kind).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from tests.harness.cluster import Cluster, wait_established

# Helm's InstallOrder (pkg/release/util/kind_sorter.go), as far as a chart like ours uses it;
# kinds not listed come last, in the order rendered.
INSTALL_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
]


class InstallFailed(AssertionError):
    pass


def install(
    cluster: Cluster, crds: Iterable[str], manifests: Iterable[str], namespace: str
) -> list[dict[str, Any]]:
    """Install a rendered chart as Helm would: `crds` are the texts of its crds/ files, `manifests`
    the rendered templates. Returns the objects created; raises InstallFailed with Helm's words."""
    for text in crds:
        for crd in yaml.safe_load_all(text):
            if crd and cluster.get("CustomResourceDefinition", None, crd["metadata"]["name"]) is None:
                cluster.apply(crd)  # Helm skips a CRD that already exists
                # and waits until each is Established (a real server serves a new kind a moment later)
                wait_established(cluster, crd["metadata"]["name"])
    objects = [doc for text in manifests for doc in yaml.safe_load_all(text) if doc]
    cluster.ensure_namespace(namespace)  # helm install --create-namespace
    paths = [(obj, resource_path(cluster, obj)) for obj in objects]  # all mapped before any is made
    created = []
    for obj, path in sorted(paths, key=lambda pair: install_rank(pair[0]["kind"])):
        body = {**obj, "metadata": {**obj["metadata"]}}
        if path.namespaced:
            body["metadata"].setdefault("namespace", namespace)
        created.append(cluster.kube.create(path.collection(body["metadata"].get("namespace")), body))
    return created


def install_rank(kind: str) -> int:
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


class ResourcePath:
    def __init__(self, group_version: str, plural: str, namespaced: bool) -> None:
        self.group_version, self.plural, self.namespaced = group_version, plural, namespaced

    def collection(self, namespace: str | None) -> str:
        root = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        return f"{root}/namespaces/{namespace}/{self.plural}" if self.namespaced else f"{root}/{self.plural}"


def resource_path(cluster: Cluster, obj: Mapping[str, Any]) -> ResourcePath:
    """Helm's REST mapping: the object's kind must be served by discovery right now."""
    group_version, kind = obj["apiVersion"], obj["kind"]
    listing = cluster.kube.get("/api/v1" if group_version == "v1" else f"/apis/{group_version}")
    for resource in (listing or {}).get("resources") or ():
        if resource.get("kind") == kind and "/" not in resource["name"]:
            return ResourcePath(group_version, resource["name"], bool(resource.get("namespaced")))
    name = obj["metadata"].get("name", "")
    raise InstallFailed(
        "INSTALLATION FAILED: unable to build kubernetes objects from release manifest: resource "
        f'mapping not found for name: "{name}" namespace: "{obj["metadata"].get("namespace", "")}" '
        f'from "": no matches for kind "{kind}" in version "{group_version}"\n'
        "ensure CRDs are installed first"
    )
