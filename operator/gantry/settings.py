"""Operator settings: command-line flags override GANTRY_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    reconcile_interval: float = 5.0  # seconds between looks at a Release that is in flight
    waiting_interval: float = 10.0  # ... at one waiting for a person or a deadline, when it changed
    waiting_resync: float = 300.0  # ... at one waiting whose object did not change (see domain.flow.cadence)
    lock_sweep_interval: float = 30.0  # seconds between clearing expired EnvironmentLock leases
    source_tick: float = 5.0  # seconds between checks whether a ReleaseSource's interval is due
    webhook_port: int = 0  # push webhooks for ReleaseSources (0: none)
    webhook_address: str = "0.0.0.0"
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    peering: str | None = None  # a Kopf peering name for HA; None runs standalone
    peering_lifetime: int = 60  # seconds a silent peer counts as alive; a standby takes over after it
    peering_priority: int | None = None  # None: random, so replicas differ (equal priorities all freeze)
    liveness: str | None = None  # Kopf's health endpoint, e.g. http://0.0.0.0:8081/healthz
    workers: int = 20  # concurrent handler threads
    api_timeout: float = 30.0  # seconds a Kubernetes API request may take before it is retried
    prometheus_url: str | None = None  # default for Pipelines that do not name their own
    alertmanager_url: str | None = None  # default for Pipelines that do not name their own
    metrics_port: int = 8080  # 0: no metrics endpoint
    metrics_address: str = "0.0.0.0"  # where it listens; 127.0.0.1 keeps it off the network
    git_cache: str = ""  # where git sources are mirrored; empty: versions are taken as given, not tagged
    git_timeout: float = 60.0  # seconds one git command that talks to a remote may take before it is killed
    source_workers: int = 4  # threads for ReleaseSource looks, apart from the Release workers
    registry_timeout: float = 30.0  # seconds a ReleaseSource's registry request may take
    # Watch the workloads and Jobs Gantry waits on (needs list/watch on them cluster-wide, or in
    # every watched namespace); off: rollouts and tests are noticed on the reconcile timer only.
    watch_workloads: bool = True
    # Retention of finished Releases (a Pipeline's spec.retention overrides): keep the newest N
    # per application, delete others finished this long ago; every interval. 0 keeps all.
    retention_keep: int = 100
    retention_after: float = 7 * 24 * 3600.0
    retention_interval: float = 600.0
    # The web view (gantry.cockpit): read-only, unless it sits behind an authenticating proxy
    # that passes the user (X-Forwarded-User, X-Forwarded-Groups: oauth2-proxy's convention) and
    # web_proxy_headers trusts them; decisions are then made as that user (impersonation).
    web_port: int = 0  # 0: no web view
    web_address: str = "127.0.0.1"  # with a proxy sidecar, only it reaches the view
    web_proxy_headers: bool = False

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        namespaces = tuple(n for n in env.get("GANTRY_NAMESPACES", "").split(",") if n)
        return cls(
            reconcile_interval=float(env.get("GANTRY_RECONCILE_INTERVAL", cls.reconcile_interval)),
            waiting_interval=float(env.get("GANTRY_WAITING_INTERVAL", cls.waiting_interval)),
            waiting_resync=float(env.get("GANTRY_WAITING_RESYNC", cls.waiting_resync)),
            lock_sweep_interval=float(env.get("GANTRY_LOCK_SWEEP_INTERVAL", cls.lock_sweep_interval)),
            source_tick=float(env.get("GANTRY_SOURCE_TICK", cls.source_tick)),
            webhook_port=int(env.get("GANTRY_WEBHOOK_PORT", cls.webhook_port)),
            retention_keep=int(env.get("GANTRY_RETENTION_KEEP", cls.retention_keep)),
            retention_after=float(env.get("GANTRY_RETENTION_AFTER_SECONDS", cls.retention_after)),
            retention_interval=float(env.get("GANTRY_RETENTION_INTERVAL", cls.retention_interval)),
            webhook_address=env.get("GANTRY_WEBHOOK_ADDRESS") or cls.webhook_address,
            namespaces=namespaces,
            peering=env.get("GANTRY_PEERING") or None,
            peering_lifetime=int(env.get("GANTRY_PEERING_LIFETIME", cls.peering_lifetime)),
            peering_priority=int(env["GANTRY_PEERING_PRIORITY"])
            if env.get("GANTRY_PEERING_PRIORITY")
            else None,
            liveness=env.get("GANTRY_LIVENESS_ENDPOINT") or None,
            workers=int(env.get("GANTRY_WORKERS", cls.workers)),
            api_timeout=float(env.get("GANTRY_API_TIMEOUT", cls.api_timeout)),
            prometheus_url=env.get("GANTRY_PROMETHEUS_URL") or None,
            alertmanager_url=env.get("GANTRY_ALERTMANAGER_URL") or None,
            metrics_port=int(env.get("GANTRY_METRICS_PORT", cls.metrics_port)),
            metrics_address=env.get("GANTRY_METRICS_ADDRESS") or cls.metrics_address,
            git_cache=env.get("GANTRY_GIT_CACHE", cls.git_cache),
            git_timeout=float(env.get("GANTRY_GIT_TIMEOUT", cls.git_timeout)),
            source_workers=int(env.get("GANTRY_SOURCE_WORKERS", cls.source_workers)),
            registry_timeout=float(env.get("GANTRY_REGISTRY_TIMEOUT", cls.registry_timeout)),
            watch_workloads=env.get("GANTRY_WATCH_WORKLOADS", "true").lower() not in ("false", "0", "no"),
            web_port=int(env.get("GANTRY_WEB_PORT", cls.web_port)),
            web_address=env.get("GANTRY_WEB_ADDRESS") or cls.web_address,
            web_proxy_headers=env.get("GANTRY_WEB_PROXY_HEADERS", "false").lower() in ("true", "1", "yes"),
        )
