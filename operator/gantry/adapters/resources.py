"""Gantry's objects and the workloads it touches: every kind's adapter (adapters/objects/) in one
object, for the callers (observer, executors, handlers) that need several kinds at once."""

from __future__ import annotations

from gantry.adapters.kube import Kube
from gantry.adapters.objects.jobs import Jobs
from gantry.adapters.objects.locks import Locks
from gantry.adapters.objects.pipelines import Pipelines
from gantry.adapters.objects.workloads import Workloads


class Resources(Locks, Pipelines, Workloads, Jobs):  # Locks brings Releases
    def __init__(self, kube: Kube) -> None:
        super().__init__(kube)
