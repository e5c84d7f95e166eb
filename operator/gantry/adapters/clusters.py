"""Other clusters a stage deploys to, reached through the kubeconfig Secret it names.

Only the stage's workloads and test Jobs live there; its locks, records and Events stay with the
Release. A client is made once per Secret version (an edited Secret is picked up at once), with
Gantry's User-Agent and the same request timeout as this cluster's.
"""

from __future__ import annotations

import base64
import threading

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from gantry.adapters.kube import Kube, core_path
from gantry.adapters.resources import Resources
from gantry.domain.inputs.workloads import FIELD_MANAGER

KEYS = ("kubeconfig", "value", "config")  # Cluster API's, Argo CD's and the common names for the key


class ClusterError(Exception):
    """The stage's cluster cannot be used: no Secret, or no kubeconfig in it. Words for a person."""


class Clusters:
    def __init__(self, local: Resources) -> None:
        self.local = local
        self._clients: dict[tuple[str, str], tuple[str, Resources]] = {}
        self._guard = threading.Lock()

    def at(self, namespace: str, cluster: str) -> Resources:
        """This cluster's Resources for "", else those of the cluster the Secret names."""
        if not cluster:
            return self.local
        body = self.local.kube.get(core_path("secrets", namespace, cluster))
        if body is None:
            raise ClusterError(f"Secret {namespace}/{cluster} does not exist")
        version = str(body["metadata"].get("resourceVersion"))
        with self._guard:
            cached = self._clients.get((namespace, cluster))
            if cached is not None and cached[0] == version:
                return cached[1]
        resources = Resources(Kube(client_from(body.get("data") or {}, f"{namespace}/{cluster}")))
        with self._guard:
            self._clients[(namespace, cluster)] = (version, resources)
        return resources


def client_from(data: dict[str, str], secret: str) -> k8s_client.ApiClient:
    raw = next((data[k] for k in KEYS if data.get(k)), None)
    if raw is None:
        raise ClusterError(f"Secret {secret} has no kubeconfig (a key named {', '.join(KEYS)})")
    try:
        config = yaml.safe_load(base64.b64decode(raw).decode())
        api = k8s_config.new_client_from_config_dict(config)  # type: ignore[no-untyped-call]
    except (ValueError, yaml.YAMLError, k8s_config.ConfigException, TypeError, KeyError) as error:
        raise ClusterError(f"Secret {secret}: not a usable kubeconfig ({error})") from None
    api.user_agent = f"{FIELD_MANAGER}/0.1"
    return api  # type: ignore[no-any-return]
