"""The integration-test Job a stage runs after its rollout, built from the Pipeline's template."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

LABEL_RELEASE = "gantry.dev/release"
LABEL_RELEASE_UID = "gantry.dev/release-uid"
LABEL_STAGE = "gantry.dev/stage"
LABEL_APPLICATION = "gantry.dev/application"
LABEL_VALUE_MAX = 63  # Kubernetes refuses longer label values; Release names may have 253 characters
FINISHED_JOB_TTL_SECONDS = 86_400  # finished test Jobs are kept a day for their logs, then cleaned up


def label_value(text: str) -> str:
    """`text` as a valid label value: cut to 63 characters with a hash of the whole, so distinct
    long names stay distinct."""
    if len(text) <= LABEL_VALUE_MAX:
        return text
    suffix = hashlib.sha256(text.encode()).hexdigest()[:8]
    return text[: LABEL_VALUE_MAX - 9].rstrip("-_.") + "-" + suffix


def job_name(release: str, stage: str, uid: str) -> str:
    """Deterministic, so a restarted operator finds the Job it created instead of making a second."""
    suffix = hashlib.sha256(uid.encode()).hexdigest()[:8]
    return f"{release}-{stage}"[:54].rstrip("-") + f"-{suffix}"


def check_template(template: Mapping[str, Any], field: str) -> Problem | None:
    spec = template.get("spec")
    pod = spec.get("template", {}).get("spec") if isinstance(spec, Mapping) else None
    containers = pod.get("containers") if isinstance(pod, Mapping) else None
    if not isinstance(containers, list) or not containers:
        return Problem(
            Reason.INVALID_TEST_JOB_TEMPLATE,
            f"{field}.spec.template.spec.containers",
            "the Job template has no containers",
            "give jobTemplate.spec.template.spec.containers at least one container with name and image",
        )
    for index, container in enumerate(containers):
        if not isinstance(container, Mapping) or not container.get("name") or not container.get("image"):
            return Problem(
                Reason.INVALID_TEST_JOB_TEMPLATE,
                f"{field}.spec.template.spec.containers[{index}]",
                "a test container needs a name and an image",
                "set name: and image: on every container",
            )
    restart = pod.get("restartPolicy", "Never") if isinstance(pod, Mapping) else "Never"
    if restart not in ("Never", "OnFailure"):
        return Problem(
            Reason.INVALID_TEST_JOB_TEMPLATE,
            f"{field}.spec.template.spec.restartPolicy",
            f"restartPolicy {restart!r} is not allowed for a Job",
            "use Never (or OnFailure)",
        )
    return None


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """So the garbage collector deletes the Job (and its Pods) with the Release."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
    }


def build_job(
    template: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    release: str,
    release_uid: str,
    application: str,
    version: str,
    stage: str,
    timeout_seconds: int,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Job manifest: the template plus Gantry's labels and GANTRY_* variables for the test code.

    The Job stops itself at the stage's test timeout (activeDeadlineSeconds), is cleaned up a day
    after it finished, and, in the Release's own namespace, is owned by the Release, so deleting
    the Release deletes its Jobs.
    """
    labels = {
        LABEL_RELEASE: label_value(release),
        LABEL_RELEASE_UID: label_value(release_uid),
        LABEL_STAGE: label_value(stage),
        LABEL_APPLICATION: label_value(application),
    }
    metadata = copy.deepcopy(dict(template.get("metadata") or {}))
    metadata.update(name=name, namespace=namespace)
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    if owner is not None and owner["metadata"]["namespace"] == namespace:  # never across namespaces
        metadata["ownerReferences"] = [owner_reference(owner)]
    spec = copy.deepcopy(dict(template["spec"]))
    spec.setdefault("backoffLimit", 0)  # a flaky test is a failed test; retries hide regressions
    spec["activeDeadlineSeconds"] = min(
        int(spec.get("activeDeadlineSeconds") or timeout_seconds), timeout_seconds
    )
    spec.setdefault("ttlSecondsAfterFinished", FINISHED_JOB_TTL_SECONDS)
    pod_template = spec.setdefault("template", {})
    pod_template.setdefault("metadata", {})
    pod_template["metadata"]["labels"] = {**(pod_template["metadata"].get("labels") or {}), **labels}
    pod_spec = pod_template["spec"]
    pod_spec.setdefault("restartPolicy", "Never")
    env = [
        {"name": "GANTRY_RELEASE", "value": release},
        {"name": "GANTRY_APPLICATION", "value": application},
        {"name": "GANTRY_VERSION", "value": version},
        {"name": "GANTRY_STAGE", "value": stage},
    ]
    for container in pod_spec["containers"]:
        container["env"] = [*(container.get("env") or []), *env]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
