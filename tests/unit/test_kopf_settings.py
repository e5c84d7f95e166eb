"""What the operator changes in Kopf's settings keeps Kopf's meaning."""

from __future__ import annotations

import kopf

from gantry.runner import PREFIX, SpecDiffBase

RELEASE = {
    "apiVersion": "gantry.dev/v1alpha1",
    "kind": "Release",
    "metadata": {
        "name": "shop-v1",
        "namespace": "team",
        "uid": "u1",
        "resourceVersion": "7",
        "labels": {"app": "shop"},
        "annotations": {
            "note": "kept",
            f"{PREFIX}/last-handled-configuration": '{"spec":{}}\n',
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
        "finalizers": ["gantry.dev/finalizer"],
    },
    "spec": {"application": "shop", "version": "v1.0.0"},
    "status": {"phase": "Deploying", "stages": [{"index": 0, "name": "staging", "spec": {"lock": True}}]},
}


def test_the_diff_base_left_without_the_status_is_kopfs_own() -> None:
    ours = SpecDiffBase(prefix=PREFIX, key="last-handled-configuration")
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    body = kopf.Body(RELEASE)
    assert ours.build(body=body) == kopfs.build(body=body)
    assert ours.build(body=body)["spec"] == RELEASE["spec"]
    assert "status" not in ours.build(body=body)
    followed = ["status.phase"]  # a handler that follows a status field: built as Kopf builds it
    assert ours.build(body=body, extra_fields=followed) == kopfs.build(body=body, extra_fields=followed)
    assert ours.build(body=body, extra_fields=followed)["status"] == {"phase": "Deploying"}
