"""Running the operator: `gantry run`, or embedded (tests, the demo) with stop/ready flags."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
from collections.abc import Iterable
from typing import Any, cast

import kopf
from aiohttp import web
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from gantry import cockpit
from gantry.adapters.kube import (
    FINALIZER,
    UNREACHABLE,
    ApiError,
    Kube,
    load_configuration,
    no_cluster,
    unreachable,
)
from gantry.handlers import decisions as decision_handlers
from gantry.handlers import locks as lock_handlers
from gantry.handlers import pipelines as pipeline_handlers
from gantry.handlers import releases as release_handlers
from gantry.handlers import serving
from gantry.handlers import sources as source_handlers
from gantry.handlers import watches as watch_handlers
from gantry.runtime import Runtime
from gantry.settings import Config

PREFIX = "gantry.dev"
WATCH_WORKERS = 100  # objects handled at once per kind (each a Kopf worker task)


class SpecDiffBase(kopf.AnnotationsDiffBaseStorage):
    """Kopf's record of what it last handled, built on every watch event: Kopf deep-copies the whole
    object and then drops its status. A Release's status is most of it (every stage's record) and
    changes on every write, so it is left out before the copy. The result is the same."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if extra_fields or "status" not in body:  # a field of the status to follow: Kopf's own way
            return super().build(body=body, extra_fields=extra_fields)
        slim = cast(kopf.RawBody, {k: v for k, v in body.items() if k != "status"})
        return super().build(body=kopf.Body(slim))


def build_registry(config: Config) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        return connection_info(load_configuration(), settings)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: Runtime, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
        settings.persistence.diffbase_storage = SpecDiffBase(prefix=PREFIX, key="last-handled-configuration")
        settings.posting.level = logging.WARNING  # our own Events say what happened; skip Kopf's chatter
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        settings.execution.max_workers = config.workers
        # Kopf starts a task per object on its first event and keeps it idle for 5 s: at start-up
        # that is a task for every Pipeline at once, whose memory Python keeps afterwards (about
        # 20 KB each). A bounded pool of short-lived ones keeps the RSS to the work in flight.
        settings.queueing.worker_limit = WATCH_WORKERS
        settings.queueing.idle_timeout = 0.2
        # One active replica: the others stand by and take over once its peering record goes stale.
        # Kopf freezes every peer when priorities tie, so identical replicas each draw their own.
        settings.peering.lifetime = config.peering_lifetime
        settings.peering.priority = (
            config.peering_priority
            if config.peering_priority is not None
            else random.SystemRandom().randint(1, 2**31 - 1)
        )
        settings.peering.mandatory = config.peering is not None
        if not hasattr(memo, "resources"):
            memo.connect(config)
        memo.executor = settings.execution.executor
        watch_handlers.select(settings, config)
        if config.metrics_port and memo.metrics is not None:
            serve_metrics(memo, config)

    release_handlers.register(registry, config)
    pipeline_handlers.register(registry, config)
    lock_handlers.register(registry, config)
    source_handlers.register(registry, config)
    decision_handlers.register(registry)
    watch_handlers.register(registry, config)
    if config.web_port:
        serve_web_view(registry, config)
    return registry


def serve_web_view(registry: kopf.OperatorRegistry, config: Config) -> None:
    async def start(runtime: Runtime) -> web.AppRunner:
        kube, trusted = runtime.resources.kube, config.web_proxy_headers
        view = cockpit.Cockpit(kube, runtime.blocking, config.namespaces, trusted)
        return await cockpit.serve(view, config.web_address, config.web_port)

    where = (config.web_address, config.web_port)
    serving.serve_while_running(registry, "web view", "GANTRY_WEB_PORT", where, start)


def serve_metrics(memo: Runtime, config: Config) -> None:
    """A taken port stops the operator at once with one line, instead of retrying start-up."""
    assert memo.metrics is not None
    try:
        memo.metrics.serve(config.metrics_port, config.metrics_address)
    except OSError as error:
        raise kopf.PermanentError(
            f"cannot serve metrics on {config.metrics_address}:{config.metrics_port}: {error.strerror}; "
            "fix: free the port, or set GANTRY_METRICS_PORT (0: no metrics) or GANTRY_METRICS_ADDRESS"
        ) from error


def connection_info(config: Any, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """Kopf's credentials from the same Configuration the adapters use (kubeconfig or in-cluster)."""
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        trust_env=settings.networking.trust_env,
    )


async def run_async(
    config: Config,
    memo: Runtime | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    await kopf.operator(
        registry=build_registry(config),
        memo=memo if memo is not None else Runtime(),
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        standalone=config.peering is None,
        peering_name=config.peering,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        liveness_endpoint=config.liveness,
    )


class StartupFailed(Exception):
    """The operator cannot start as configured; the message says why and what to change."""


def run(config: Config, wait_for_cluster: bool = False) -> None:
    """`wait_for_cluster`: retry (Kopf's back-off) while no API server answers, instead of
    failing at once with one line."""
    if not wait_for_cluster:
        reach_cluster()
    # The modules and what importing them made live as long as the process: out of the
    # collector's sight, a full collection no longer walks them (else a pause of tens of ms now
    # and then, in the middle of a reconcile). Only here: an embedded operator's host process
    # (the tests) keeps collecting what it frees.
    gc.freeze()
    try:
        asyncio.run(run_async(config))
    except Exception as failure:
        permanent = permanent_cause(failure)
        if permanent is not None:
            raise StartupFailed(str(permanent)) from None
        raise


def reach_cluster(timeout: float = 5.0) -> None:
    """Fail fast, in one line, when there is no cluster to run against (no kubeconfig, nothing
    listening): Kopf would otherwise log tracebacks and retry for minutes."""
    try:
        configuration = load_configuration()
    except k8s_config.ConfigException as error:
        raise StartupFailed(f"{no_cluster(error)} (or run it in a cluster), or use --wait") from None
    configuration.retries = 0  # one question, one answer: no urllib3 retry warnings before the line
    try:
        Kube(k8s_client.ApiClient(configuration), timeout=timeout).request("GET", "/version")
    except ApiError:
        return  # it answered: whatever it said, there is a cluster (RBAC problems are reported later)
    except UNREACHABLE as error:
        raise StartupFailed(
            f"{unreachable(configuration.host, error)}; "
            "start the cluster or point KUBECONFIG at one, or use --wait to keep retrying"
        ) from None


def permanent_cause(error: BaseException | None) -> BaseException | None:
    """The PermanentError a start-up handler raised, under Kopf's ActivityError."""
    while error is not None and not isinstance(error, kopf.PermanentError):
        error = error.__cause__
    return error
