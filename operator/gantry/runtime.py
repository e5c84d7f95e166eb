"""What the handlers share for one operator run (Kopf's `memo`): adapters, reconciler, metrics."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import kopf

from gantry.adapters.alerts import Alerter, AlertRouter
from gantry.adapters.git import Mirrors
from gantry.adapters.kube import Kube, load_api_client
from gantry.adapters.metrics import Metrics
from gantry.adapters.resources import Resources
from gantry.decision_desk import DecisionDesk
from gantry.domain.flow.model import Event
from gantry.reconciler import ReleaseReconciler, utcnow
from gantry.retirement import Retirement
from gantry.settings import Config
from gantry.source_poller import SourcePoller
from gantry.stop_the_line import StopTheLine
from gantry.wakeups import Wakeups

T = TypeVar("T")


class Runtime(kopf.Memo):
    resources: Resources
    reconciler: ReleaseReconciler
    desk: DecisionDesk
    sources: SourcePoller
    stop_the_line: StopTheLine  # Alertmanager's notifications freeze environments (webhooks)
    retirement: Retirement  # retention of finished Releases (handlers.pipelines)
    retention_task: Any  # its loop while the operator runs
    webhooks: Any  # the push-webhook server while it runs (adapters.webhooks), else absent
    web_view: Any  # the web view while it runs (gantry.cockpit), else absent (handlers.serving)
    metrics: Metrics | None
    wakeups: Wakeups
    executor: Executor | None  # Kopf's thread pool for blocking work; None: asyncio's default
    source_executor: Executor  # ReleaseSource looks: a git or registry host that hangs stalls only these
    handoffs: set[asyncio.Future[None]]  # touches in flight (handlers.releases)

    def connect(self, config: Config, alerter: Alerter | None = None) -> None:
        self.wakeups = Wakeups()
        self.handoffs = set()
        self.executor = None
        self.source_executor = ThreadPoolExecutor(config.source_workers, thread_name_prefix="gantry-sources")
        self.resources = Resources(Kube(load_api_client(config.workers), timeout=config.api_timeout))
        self.metrics = Metrics()
        alerter = alerter or AlertRouter(config.alertmanager_url, self.resources.read_secret)
        # one per operator: one lock per mirror
        mirrors = Mirrors(config.git_cache, config.git_timeout) if config.git_cache else None
        self.sources = SourcePoller(self.resources, mirrors, utcnow, config.registry_timeout)
        self.stop_the_line = StopTheLine(self.resources, utcnow)
        self.reconciler = ReleaseReconciler(
            self.resources,
            alerter,
            post_event,
            metrics=self.metrics,
            prometheus_url=config.prometheus_url,
            mirrors=mirrors,
            min_lease_seconds=3 * config.reconcile_interval,
        )
        self.desk = DecisionDesk(self.resources, self.reconciler)
        self.retirement = Retirement(
            self.reconciler.adapters,
            self.metrics,
            config.retention_keep,
            timedelta(seconds=config.retention_after),
            utcnow,
        )

    def handoff(self, namespace: str, name: str) -> None:
        """Make a watch event on a Release (an annotation with the time), so Kopf gives it a
        driver again (see handlers.releases)."""

        async def touch() -> None:
            await self.blocking(self.resources.touch_release, namespace, name)

        task = asyncio.ensure_future(touch())
        self.handoffs.add(task)  # kept until done: asyncio holds only a weak reference
        task.add_done_callback(self.handoffs.discard)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work in Kopf's thread pool, with Kopf's context (kopf.event needs it)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, fn, *args)

    async def looking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a ReleaseSource look in the sources' own bounded pool: looks wait for git and
        registries, and however many of those hang, the Release workers stay free."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.source_executor, context.run, fn, *args)


def post_event(body: Any, event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)
