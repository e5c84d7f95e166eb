"""Manifests the e2e tests apply: a two-stage pipeline (dev, staging under a lock) and its workloads."""

from __future__ import annotations

import hashlib
from typing import Any

REGISTRY = "registry.example.com/shop"


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def image(name: str, seed: str) -> str:
    return f"{REGISTRY}/{name}@{digest(seed)}"


def deployment(
    namespace: str,
    name: str,
    containers: dict[str, str],
    replicas: int = 2,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": c, "image": i} for c, i in containers.items()]},
            },
        },
    }


def test_job_template(script: str = "exit 0") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"suite": "integration"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "tests", "image": "busybox:1.36", "command": ["sh", "-c", script]}
                    ]
                }
            }
        },
    }


def pipeline(
    namespace: str,
    name: str = "shop",
    *,
    app_namespace: str | None = None,
    script: str = "exit 0",
    lease_env: str = "staging",
    rollout_timeout: int = 30,
    test_timeout: int = 30,
) -> dict[str, Any]:
    target_ns = app_namespace or namespace
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "application": "shop",
            "requireTag": False,  # these tests' Releases name their version and carry no git source
            "stages": [
                {
                    "name": "staging",
                    "environment": lease_env,
                    "lock": True,
                    "rolloutTimeoutSeconds": rollout_timeout,
                    "targets": [
                        {"namespace": target_ns, "name": "web"},
                        {"namespace": target_ns, "name": "worker"},
                    ],
                    "test": {"jobTemplate": test_job_template(script), "timeoutSeconds": test_timeout},
                },
                {
                    "name": "production",
                    "production": True,
                    "targets": [{"namespace": target_ns, "name": "web"}],
                },
            ],
        },
    }


def release(
    namespace: str,
    name: str,
    seed: str,
    version: str = "v1.0.0",
    pipeline_name: str = "shop",
    artifacts: dict[str, str] | None = None,
) -> dict[str, Any]:
    artifacts = artifacts or {"web": image("web", seed), "worker": image("worker", seed)}
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "application": "shop",
            "pipeline": pipeline_name,
            "version": version,
            "source": {
                "repository": "https://git.example.com/shop.git",
                "revision": hashlib.sha1(seed.encode()).hexdigest(),
            },
            "artifacts": [{"name": k, "image": v} for k, v in artifacts.items()],
        },
    }


OLD_WEB = image("web", "old")
OLD_WORKER = image("worker", "old")


def workloads(namespace: str) -> list[dict[str, Any]]:
    return [
        deployment(namespace, "web", {"web": OLD_WEB, "istio-proxy": "istio/proxyv2@" + digest("istio")}),
        deployment(namespace, "worker", {"worker": OLD_WORKER}, replicas=1),
    ]


def production_pipeline(
    namespace: str,
    prod_namespace: str,
    prometheus_url: str,
    alertmanager_url: str | None = None,
    promotion: str = "Auto",
    test: bool = False,
    guard: dict[str, Any] | None = None,
    **analysis: Any,
) -> dict[str, Any]:
    """staging (locked) -> production with a fast bake: 1 s evaluations over a 5 s rate window
    (and, with `guard`, production watched after its release)."""
    staging: dict[str, Any] = {
        "name": "staging",
        "lock": True,
        "targets": [{"namespace": namespace, "name": "web"}, {"namespace": namespace, "name": "worker"}],
    }
    if test:
        staging["test"] = {"jobTemplate": test_job_template("exit 0"), "timeoutSeconds": 30}
    bake: dict[str, Any] = {
        "prometheus": {"url": prometheus_url},
        "threshold": 0.1,
        "minRequestRate": 1,
        "window": "5s",
        "intervalSeconds": 1,
        "bakeSeconds": 5,
        "consecutiveBreaches": 2,
        "inconclusiveLimit": 2,
        **analysis,
    }
    spec: dict[str, Any] = {
        "application": "shop",
        "requireTag": False,  # these tests' Releases name their version and carry no git source
        "stages": [
            staging,
            {
                "name": "production",
                "production": True,
                "promotion": promotion,
                "rolloutTimeoutSeconds": 30,
                "targets": [
                    {"namespace": prod_namespace, "name": "web"},
                    {"namespace": prod_namespace, "name": "worker"},
                ],
                "analysis": bake,
                **({"guard": guard} if guard is not None else {}),
            },
        ],
    }
    if alertmanager_url:
        spec["alerts"] = {"labels": {"team": "shop"}, "alertmanager": {"url": alertmanager_url}}
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": spec,
    }


def production_branch_pipeline(
    namespace: str, prod_namespace: str, origin: str, promotion: str = "Auto"
) -> dict[str, Any]:
    """The first seed through git: staging commits to main's shop/, production (in
    `prod_namespace`) takes the tag of what staging ran, merged into the production branch."""
    spec = pipeline(namespace)
    spec["spec"]["stages"][0]["git"] = {"repository": origin, "branch": "main", "path": "shop"}
    spec["spec"]["stages"][1].update(
        targets=[
            {"namespace": prod_namespace, "name": "web"},
            {"namespace": prod_namespace, "name": "worker"},
        ],
        promotion=promotion,
        git={"repository": origin, "branch": "production", "path": "shop", "promoteFrom": "staging"},
    )
    return spec


def environment_lock(namespace: str, lease_seconds: int, name: str = "staging") -> dict[str, Any]:
    """An EnvironmentLock as a team applies it (Gantry makes one, free, for each locked stage)."""
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "EnvironmentLock",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"leaseSeconds": lease_seconds},
    }


def decision(
    namespace: str,
    release_name: str,
    action: str,
    by: str = "bob",
    reason: str = "on-call call",
    name: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "ReleaseDecision",
        "metadata": {"name": name or f"{release_name}-{action.lower()}", "namespace": namespace},
        "spec": {"release": release_name, "action": action, "reason": reason, "decidedBy": by},
    }
