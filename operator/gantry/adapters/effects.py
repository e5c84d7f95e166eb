"""What every effect executor gets, and how it says an effect failed.

An executor carries out one kind of Effect against one adapter (kube, git, registry, alerts).
Failures the domain can act on are raised as `EffectFailed` in the domain's vocabulary
(`model.Failure`); blips (409s, 5xx, timeouts of the API server) propagate as they are and the
whole tick is retried, which is safe because every effect is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gantry.adapters.alerts import Alerter
from gantry.adapters.clusters import ClusterError, Clusters
from gantry.adapters.git import Mirrors
from gantry.adapters.git_targets import GitTargets
from gantry.adapters.resources import Resources
from gantry.domain.flow.model import Event, Failure, ReleaseView
from gantry.domain.inputs.pipeline import Pipeline
from gantry.domain.vocabulary.problems import Problem

EventSink = Callable[[Mapping[str, Any], Event], None]


class Registry(Protocol):
    """What promotion needs of a registry (adapters.registry.RegistryClient has it)."""

    def tag(self, source: Any, digest: str, target: Any, tag: str) -> None: ...

    def resolve(self, repository: Any, tag: str) -> str | None: ...


# (namespace, Pipeline) -> a registry client with that Pipeline's credentials and TLS settings
RegistryFactory = Callable[[str, Pipeline | Problem], Registry]


class EffectFailed(Exception):
    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


@dataclass(frozen=True)
class Adapters:
    """The operator's connections to the world, shared by every Release."""

    resources: Resources
    alerter: Alerter
    emit: EventSink
    mirrors: Mirrors | None  # git sources; None: no git configured
    registry: RegistryFactory
    git_targets: GitTargets | None = None  # stages deploying through git; None: no git configured
    clusters: Clusters | None = None  # stages in other clusters; None: this cluster only

    def at(self, namespace: str, cluster: str) -> Resources:
        """Where a stage's workloads and test Jobs live: this cluster, or the one its Secret names."""
        if not cluster:
            return self.resources
        if self.clusters is None:
            raise ClusterError(f"cluster {cluster}: this operator reaches no other cluster")
        return self.clusters.at(namespace, cluster)


@dataclass(frozen=True)
class Context:
    """One Release's tick, as its executors see it."""

    release: ReleaseView
    pipeline: Pipeline | Problem
    now: datetime
    adapters: Adapters

    @property
    def namespace(self) -> str:
        return self.release.namespace

    def announce(self, type_: str, reason: str, message: str) -> None:
        """An Event posted the moment something happened (a lost status write must not lose it)."""
        self.adapters.emit(self.release.reference(), Event(type_, reason, message))


Executor = Callable[[Context, Any], None]
