"""Running the operator: `gantry run`, or embedded (tests, the demo) with stop/ready flags."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf

from gantry.handlers import locks as lock_handlers
from gantry.handlers import pipelines as pipeline_handlers
from gantry.handlers import releases as release_handlers
from gantry.runtime import Runtime
from gantry.settings import Config

PREFIX = "gantry.dev"


def build_registry(config: Config) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)  # the same kubeconfig / in-cluster rules as kubectl

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: Runtime, **_: Any) -> None:
        settings.persistence.finalizer = f"{PREFIX}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # our own Events say what happened; skip Kopf's chatter
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        settings.execution.max_workers = config.workers
        if not hasattr(memo, "resources"):
            memo.connect()

    release_handlers.register(registry, config)
    pipeline_handlers.register(registry)
    lock_handlers.register(registry, config)
    return registry


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
    )


def run(config: Config) -> None:
    asyncio.run(run_async(config))
