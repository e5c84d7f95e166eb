"""Test Jobs: created, observed (with their Pods' exit codes), deleted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gantry.adapters.kube import ApiError, core_path, job_path
from gantry.adapters.objects.store import Store
from gantry.domain.flow.model import ObservedJob


class Jobs(Store):
    def get_job(self, namespace: str, name: str) -> ObservedJob | None:
        body = self.kube.get(job_path(namespace, name))
        if body is None:
            return None
        job = observe_job(body)
        if body["metadata"].get("deletionTimestamp") and not job.finished:
            # Being deleted: a Job deleted through the API without a propagation policy keeps an
            # `orphan` finalizer until the garbage collector has let go of its Pods (on a busy
            # cluster a while; without one, for ever). Its test will never report: it is gone.
            return None
        if job.finished and not job.succeeded:
            why = self.exit_codes(namespace, name)  # the Job says only "backoff limit reached"
            if why:
                job = replace(job, message=f"{why} ({job.message})" if job.message else why)
        return job

    def exit_codes(self, namespace: str, job: str) -> str:
        """How the Job's containers ended, from its Pods (where Kubernetes keeps the exit code)."""
        try:
            path = core_path("pods", namespace)
            pods = self.kube.list_items(path, label_selector=f"job-name={job}")
        except ApiError as error:
            if error.transient:
                raise
            return ""  # no right to list Pods: the Job's own message has to do
        ended = [
            (c["name"], c["state"]["terminated"])
            for pod in pods
            for c in (pod.get("status") or {}).get("containerStatuses") or ()
            if (c.get("state") or {}).get("terminated", {}).get("exitCode")
        ]
        return "; ".join(
            f"container {name} exited with code {t['exitCode']}"
            + (f" ({t['reason']})" if t.get("reason") else "")
            for name, t in ended
        )

    def create_job(self, manifest: Mapping[str, Any]) -> None:
        namespace = manifest["metadata"]["namespace"]
        try:
            self.kube.create(job_path(namespace), manifest)
        except ApiError as error:
            # AlreadyExists: created by an earlier attempt of this very tick. Any other 409 is no
            # proof the Job exists: raise, and the tick is retried.
            if not (error.conflict and error.reason == "AlreadyExists"):
                raise

    def delete_job(self, namespace: str, name: str) -> None:
        """Stop a test Job and its Pods (background propagation)."""
        self.kube.delete(job_path(namespace, name))


def observe_job(body: Mapping[str, Any]) -> ObservedJob:
    name = body["metadata"]["name"]
    for condition in (body.get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return ObservedJob(name, finished=True, succeeded=True)
        if condition.get("type") == "Failed":
            message = condition.get("message") or condition.get("reason") or ""
            return ObservedJob(name, finished=True, succeeded=False, message=message)
    return ObservedJob(name, finished=False, succeeded=False)
