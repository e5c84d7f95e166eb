"""What the stand-in deployment and job controllers decide, as plain functions over objects.

One home for both drivers: the emulator's built-in `Controllers` (cluster.py, in-process) and
the envtest tier's `ApiControllers` (api_controllers.py, through the API). The statuses are the
ones kube-controller-manager and a kubelet would write, valid for a real kube-apiserver too.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

ExitCode = Callable[[dict[str, Any], int], int]  # (the Job, the code its script says) -> the code


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def workload_status(kind: str, body: Mapping[str, Any], stuck: bool) -> dict[str, Any] | None:
    """The status after a rollout (or a stuck one); None when it is rolled out already."""
    meta, status = body["metadata"], body.get("status") or {}
    generation, replicas = meta["generation"], int(body["spec"].get("replicas", 1))
    done = status.get("observedGeneration") == generation and status.get("availableReplicas") == replicas
    if done and not stuck:
        return None
    if stuck:
        return {
            "observedGeneration": generation,
            "replicas": replicas + 1,
            "updatedReplicas": 1,
            # the old Pods still serve: ready and available (a real server refuses available > ready)
            "availableReplicas": max(replicas - 1, 0),
            "readyReplicas": max(replicas - 1, 0),
        }
    new: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "readyReplicas": replicas,
    }
    if kind == "StatefulSet":
        new["currentRevision"] = new["updateRevision"] = f"{meta['name']}-{generation}"
    return new


def is_stuck(body: Mapping[str, Any], unpullable: set[str], held: set[tuple[str, str]]) -> bool:
    images = {c.get("image") for c in body["spec"]["template"]["spec"]["containers"]}
    return bool(images & unpullable) or (body["metadata"]["namespace"], body["metadata"]["name"]) in held


def exit_code(job: dict[str, Any], decide: ExitCode | None) -> int | None:
    """What the Job's first container ends with: its script's `exit N`; None: `sleep infinity`."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = " ".join([*(container.get("command") or []), *(container.get("args") or [])])
    if "sleep infinity" in script:
        return None
    match = re.search(r"exit (\d+)", script)
    code = int(match[1]) if match else 0
    return decide(job, code) if decide is not None else code


def job_status(code: int | None, started: str) -> dict[str, Any]:
    """As the Job controller writes it; a failure says no exit code (that is on the Pod)."""
    if code is None:
        return {"active": 1, "startTime": started}
    if code == 0:
        return {
            "startTime": started,
            "succeeded": 1,
            "completionTime": now(),
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": started},
                {"type": "Complete", "status": "True", "lastTransitionTime": now()},
            ],
        }
    failed = {
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
        "lastTransitionTime": started,
    }
    return {
        "startTime": started,
        "failed": 1,
        "conditions": [{"type": "FailureTarget", **failed}, {"type": "Failed", **failed}],
    }


def job_pod(job: Mapping[str, Any], code: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Pod that ran the Job, and its status once ended with `code` (where the code is kept)."""
    name = job["metadata"]["name"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    image = container.get("image") or "busybox"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{uuid.uuid4().hex[:5]}",
            "labels": {"job-name": name, "batch.kubernetes.io/job-name": name},
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": container["name"], "image": image}]},
    }
    terminated = {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": now(),
        "finishedAt": now(),
    }
    status = {
        "phase": "Succeeded" if code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": container["name"],
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    return pod, status
