"""Stand-in controllers that work purely through the API, for API servers with none (envtest).

The same behaviour as the emulator's built-in `Controllers`, reached the way kube-controller-
manager reaches it: watch Deployments, StatefulSets and Jobs over HTTP, write their status
through the status subresource, and create the Pod a Job ran (with its exit code) like the Job
controller and kubelet would. Used for the envtest tier (KUBEBUILDER_ASSETS), and on the
emulator by tests that check these controllers themselves (GANTRY_TEST_CONTROLLERS=api).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from gantry.adapters.kube import ApiError, Kube, job_path, workload_path

WATCHED = {
    "Deployment": "/apis/apps/v1/deployments",
    "StatefulSet": "/apis/apps/v1/statefulsets",
    "Job": "/apis/batch/v1/jobs",
}


def watch(kube: Kube, path: str, since: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
    """One watch request, with the kubeconfig's credentials and CA, event by event."""
    client = kube.api_client
    request = client.param_serialize(
        "GET",
        path,
        query_params=[
            ("watch", "true"),
            ("resourceVersion", since),
            ("timeoutSeconds", str(timeout_seconds)),
        ],
        auth_settings=["BearerToken"],
    )
    response = client.call_api(*request, _request_timeout=timeout_seconds + 5).response
    if response.status >= 400:
        raise ApiError(response.status, "WatchFailed", response.data.decode(errors="replace")[:200])
    buffer = b""
    for chunk in response.stream(1024 * 64):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ApiControllers:
    """Roll workloads out `delay` s after their spec changes; run Jobs by their `exit N`."""

    def __init__(self, kube: Kube, delay: float = 0.05) -> None:
        self.kube, self.delay = kube, delay
        self.unpullable: set[str] = set()
        self.held: set[tuple[str, str]] = set()
        self.job_exit_code: Any = None  # as Controllers.job_exit_code
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(kind, path), daemon=True, name=f"stand-in-{kind}")
            for kind, path in WATCHED.items()
        ]

    def start(self) -> ApiControllers:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def release(self, namespace: str, name: str) -> None:
        self.held.discard((namespace, name))
        for kind in ("Deployment", "StatefulSet"):
            body = self.kube.get(workload_path(kind, namespace, name))
            if body is not None:
                self.roll_out(kind, body)

    # --- the watch loop ---------------------------------------------------------------------

    def _watch(self, kind: str, path: str) -> None:
        since = ""
        while not self._stop.is_set():
            try:
                if not since:
                    listing = self.kube.request("GET", path)
                    since = listing["metadata"]["resourceVersion"]
                    for item in listing.get("items") or ():
                        self.react(kind, "ADDED", item)
                for event in watch(self.kube, path, since, timeout_seconds=5):
                    if self._stop.is_set():
                        return
                    if event["type"] == "ERROR":
                        since = ""  # expired: list again
                        break
                    since = event["object"]["metadata"].get("resourceVersion", since)
                    self.react(kind, event["type"], event["object"])
            except ApiError:
                time.sleep(0.2)

    def react(self, kind: str, type_: str, body: dict[str, Any]) -> None:
        if type_ == "DELETED":
            return
        if kind == "Job":
            if type_ == "ADDED" and not (body.get("status") or {}).get("startTime"):
                threading.Timer(self.delay, self.run_job, args=(body,)).start()
        else:
            threading.Timer(self.delay, self.roll_out, args=(kind, body)).start()

    # --- what kube-controller-manager would do ---------------------------------------------------

    def roll_out(self, kind: str, seen: dict[str, Any]) -> None:
        meta = seen["metadata"]
        body = self.kube.get(workload_path(kind, meta["namespace"], meta["name"]))
        if body is None:
            return
        meta, status = body["metadata"], body.get("status") or {}
        generation, replicas = meta["generation"], int(body["spec"].get("replicas", 1))
        images = {c.get("image") for c in body["spec"]["template"]["spec"]["containers"]}
        stuck = bool(images & self.unpullable) or (meta["namespace"], meta["name"]) in self.held
        done = status.get("observedGeneration") == generation and status.get("availableReplicas") == replicas
        if done and not stuck:
            return
        if stuck:
            new = {
                "observedGeneration": generation,
                "replicas": replicas + 1,
                "updatedReplicas": 1,
                "availableReplicas": max(replicas - 1, 0),
                "readyReplicas": 0,
            }
        else:
            new = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "readyReplicas": replicas,
            }
            if kind == "StatefulSet":
                new["currentRevision"] = new["updateRevision"] = f"{meta['name']}-{generation}"
        path = workload_path(kind, meta["namespace"], meta["name"]) + "/status"
        try:
            self.kube.merge_patch(path, {"status": new})
        except ApiError as error:
            if not error.not_found:
                raise

    def run_job(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        container = body["spec"]["template"]["spec"]["containers"][0]
        script = " ".join([*(container.get("command") or []), *(container.get("args") or [])])
        started = _now()
        path = job_path(namespace, name) + "/status"
        if "sleep infinity" in script:
            self.kube.merge_patch(path, {"status": {"active": 1, "startTime": started}})
            return
        match = re.search(r"exit (\d+)", script)
        code = int(match[1]) if match else 0
        if self.job_exit_code is not None:
            code = self.job_exit_code(body, code)
        self.pod_for(body, container, code)
        if code == 0:
            status = {
                "startTime": started,
                "succeeded": 1,
                "completionTime": _now(),
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": started},
                    {"type": "Complete", "status": "True", "lastTransitionTime": _now()},
                ],
            }
        else:
            status = {
                "startTime": started,
                "failed": 1,
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastTransitionTime": started,
                    },
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastTransitionTime": _now(),
                    },
                ],
            }
        try:
            self.kube.merge_patch(path, {"status": status})
        except ApiError as error:
            if not error.not_found:
                raise

    def pod_for(self, job: dict[str, Any], container: dict[str, Any], code: int) -> None:
        meta = job["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{uuid.uuid4().hex[:5]}",
                "labels": {"job-name": name, "batch.kubernetes.io/job-name": name},
            },
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": container["name"], "image": container.get("image") or "busybox"}],
            },
        }
        pods = f"/api/v1/namespaces/{namespace}/pods"
        created = self.kube.create(pods, pod)
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": _now(),
            "finishedAt": _now(),
        }
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image") or "busybox",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        self.kube.merge_patch(f"{pods}/{created['metadata']['name']}/status", {"status": status})
