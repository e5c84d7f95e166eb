"""Stand-in controllers that work purely through the API, for API servers with none (envtest).

The same behaviour as the emulator's built-in `Controllers`, reached the way kube-controller-
manager reaches it: watch Deployments, StatefulSets and Jobs over HTTP, write their status
through the status subresource, and create the Pod a Job ran (with its exit code) like the Job
controller and kubelet would. Used for the envtest tier (KUBEBUILDER_ASSETS), and on the
emulator by tests that check these controllers themselves (GANTRY_TEST_CONTROLLERS=api).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from gantry.adapters.kube import ApiError, Kube, job_path, workload_path
from tests.harness import stand_in

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


class ApiControllers:
    """Roll workloads out `delay` s after their spec changes; run Jobs by their `exit N`."""

    def __init__(self, kube: Kube, delay: float = 0.05) -> None:
        self.kube, self.delay = kube, delay
        self.unpullable: set[str] = set()
        self.held: set[tuple[str, str]] = set()
        self.job_exit_code: stand_in.ExitCode | None = None  # as Controllers.job_exit_code
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
        path = workload_path(kind, meta["namespace"], meta["name"])
        body = self.kube.get(path)
        if body is None:
            return
        new = stand_in.workload_status(kind, body, stand_in.is_stuck(body, self.unpullable, self.held))
        if new is not None:
            self.patch_status(path, new)

    def run_job(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        started = stand_in.now()
        code = stand_in.exit_code(body, self.job_exit_code)
        if code is not None:
            pod, status = stand_in.job_pod(body, code)
            pods = f"/api/v1/namespaces/{meta['namespace']}/pods"
            created = self.kube.create(pods, pod)
            self.patch_status(f"{pods}/{created['metadata']['name']}", status)
        self.patch_status(job_path(meta["namespace"], meta["name"]), stand_in.job_status(code, started))

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        try:
            self.kube.merge_patch(f"{path}/status", {"status": status})
        except ApiError as error:
            if not error.not_found:  # deleted meanwhile
                raise
