"""One in-memory world for the unit tests: the real Resources, Observer and effect executors over
an in-memory API (`MemoryKube`), an in-memory registry and a scripted Prometheus.

Tests drive `decide` tick by tick themselves (so they can lose writes or inject failures), and
the world carries the effects out exactly as the operator does: `World.observe` is the real
`Observer.observe`, `World.apply` is the real `executors.execute`.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import jsonpatch

from gantry.adapters.effects import Adapters, Context
from gantry.adapters.kube import ApiError, Kube, custom_path, job_path, workload_path
from gantry.adapters.registry import RegistryError
from gantry.adapters.resources import Resources
from gantry.domain.flow.model import (
    Alert,
    Effect,
    EffectFailure,
    Observation,
    Plan,
    PromoteArtifacts,
    ReleaseView,
)
from gantry.domain.inputs.analysis import Sample
from gantry.domain.inputs.pipeline import AlertConfig, Pipeline
from gantry.domain.inputs.workloads import WorkloadRef
from gantry.domain.records import ledger, locks
from gantry.executors import execute
from gantry.observer import Observer

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
NAMESPACE = "team"
PROMETHEUS = "http://prometheus.test"


class MemoryKube:
    """The verbs `Resources` uses (get, list, create, replace, merge and JSON patch), over a dict,
    with what a real API server adds: resourceVersion preconditions (409), 404s, generations
    that move only when a spec changes, and status as a subresource."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.versions = itertools.count(1)
        self.reads: list[str] = []

    def get(self, path: str) -> dict[str, Any] | None:
        self.reads.append(path)
        body = self.objects.get(path)
        return copy.deepcopy(body) if body is not None else None

    def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.reads.append(path)
        wanted = dict(pair.split("=", 1) for pair in label_selector.split(",")) if label_selector else {}
        prefix = path.rstrip("/") + "/"
        return [
            copy.deepcopy(body)
            for key, body in self.objects.items()
            if key.startswith(prefix)
            and "/" not in key[len(prefix) :]
            and wanted.items() <= (body["metadata"].get("labels") or {}).items()
        ]

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(body))
        key = f"{path}/{stored['metadata']['name']}"
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f"{key} already exists")
        stored["metadata"].update(generation=1, uid=f"uid-{key}")
        self.objects[key] = stored
        self._stamp(key)
        return copy.deepcopy(stored)

    def create_unless_exists(self, path: str, body: Mapping[str, Any]) -> bool:
        return Kube.create_unless_exists(self, path, body)  # type: ignore[arg-type]  # Kube's, over this create

    def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        key, status_only = self._split(path)
        current = self._current(key)
        wanted = body["metadata"].get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"{key} was modified")
        new = copy.deepcopy(dict(body))
        if status_only:
            new = {**copy.deepcopy(current), "status": new.get("status") or {}}
        return self._store(key, current, new)

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        key, status_only = self._split(path)
        current = self._current(key)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"{key} was modified")
        changes = {"status": patch.get("status") or {}} if status_only else dict(patch)
        return self._store(key, current, merge(copy.deepcopy(current), changes))

    def json_patch(self, path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        key, _ = self._split(path)
        current = self._current(key)
        try:
            new = jsonpatch.apply_patch(current, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as failed:
            raise ApiError(422, "Invalid", str(failed)) from failed
        return self._store(key, current, new)

    def delete(self, path: str, propagation: str = "Background") -> None:
        self.objects.pop(path, None)

    def put(self, body: Mapping[str, Any], path: str) -> None:
        """Test setup: store an object as it is (no precondition)."""
        self.objects[path] = copy.deepcopy(dict(body))
        self.objects[path]["metadata"].setdefault("generation", 1)
        self._stamp(path)

    def _split(self, path: str) -> tuple[str, bool]:
        return (path.removesuffix("/status"), True) if path.endswith("/status") else (path, False)

    def _current(self, key: str) -> dict[str, Any]:
        if key not in self.objects:
            raise ApiError(404, "NotFound", f"{key} not found")
        return self.objects[key]

    def _store(self, key: str, current: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        new["metadata"] = {**new["metadata"], "generation": current["metadata"].get("generation", 1)}
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] += 1
        self.objects[key] = new
        self._stamp(key)
        return copy.deepcopy(new)

    def _stamp(self, key: str) -> None:
        self.objects[key]["metadata"]["resourceVersion"] = str(next(self.versions))


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch."""
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        elif isinstance(value, Mapping) and isinstance(target.get(name), dict):
            target[name] = merge(target[name], value)
        else:
            target[name] = copy.deepcopy(value)
    return target


class MemoryRegistry:
    """Tags as a dict; `failure` = (kind, message) makes every call fail like a real registry."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.failure: tuple[str, str] | None = None

    def resolve(self, repository: Any, tag: str) -> str | None:
        self._fail()
        return self.tags.get(f"{repository}:{tag}")

    def tag(self, source: Any, digest: str, target: Any, tag: str) -> None:
        self._fail()
        self.tags.setdefault(f"{target}:{tag}", digest)

    def _fail(self) -> None:
        if self.failure is not None:
            raise RegistryError(*self.failure)


class ScriptedPrometheus:
    """Answers every query with the sample the test set (None: no evaluation this tick)."""

    def __init__(self) -> None:
        self.answer: Sample | None = None

    def sample(self, url: str, error_query: str, request_query: str) -> Sample | None:
        return self.answer


class RecordingAlerter:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert, labels: dict[str, str], config: AlertConfig | None = None) -> None:
        self.sent.append(alert)


class Images(MutableMapping[WorkloadRef, str]):
    """The first container's image of each Deployment in the world, readable and writable."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __getitem__(self, ref: WorkloadRef) -> str:
        body = self.world.kube.objects[workload_path(ref.kind, ref.namespace, ref.name)]
        return str(body["spec"]["template"]["spec"]["containers"][0]["image"])

    def __setitem__(self, ref: WorkloadRef, image: str) -> None:
        self.world.deployment(ref, image)

    def __delitem__(self, ref: WorkloadRef) -> None:
        del self.world.kube.objects[workload_path(ref.kind, ref.namespace, ref.name)]

    def __iter__(self) -> Iterator[WorkloadRef]:
        return iter(self.world.workloads)

    def __len__(self) -> int:
        return len(self.world.workloads)


class Quarantined(MutableMapping[str, Mapping[str, Any]]):
    """The Pipeline's status.quarantine as digest -> record, readable and writable."""

    def __init__(self, world: World) -> None:
        self.world = world

    def _entries(self) -> list[dict[str, Any]]:
        return list(self.world.pipeline_status().get("quarantine") or [])

    def __getitem__(self, digest: str) -> Mapping[str, Any]:
        return next(e for e in self._entries() if e["digest"] == digest)

    def __setitem__(self, digest: str, record: Mapping[str, Any]) -> None:
        entries = [e for e in self._entries() if e["digest"] != digest] + [{**record, "digest": digest}]
        self.world.set_pipeline_status(quarantine=entries)

    def __delitem__(self, digest: str) -> None:
        self.world.set_pipeline_status(quarantine=[e for e in self._entries() if e["digest"] != digest])

    def __iter__(self) -> Iterator[str]:
        return iter([e["digest"] for e in self._entries()])

    def __len__(self) -> int:
        return len(self._entries())


class World:
    """A namespace with one Pipeline, its Deployments (one container `web` each), the locks Gantry
    makes, test Jobs, a registry and Prometheus; `now` moves only when the test moves it."""

    def __init__(self, pipeline: Pipeline, images: Mapping[WorkloadRef, str]) -> None:
        self.kube = MemoryKube()
        self.resources = Resources(self.kube)  # type: ignore[arg-type]
        self.registry = MemoryRegistry()
        self.prometheus = ScriptedPrometheus()
        self.alerter = RecordingAlerter()
        self.events: list[Any] = []
        self.effects: list[Effect] = []
        self.now = T0
        self.job_outcome = "running"  # what a test Job created from now on does: running/succeeded/failed
        self.controller = True  # the Deployment controller rolls new specs out at once
        self.workloads = list(images)
        self.pipe = pipeline
        self.adapters = Adapters(
            self.resources,
            self.alerter,
            lambda body, event: self.events.append(event),
            None,
            lambda namespace, pipe: self.registry,
        )
        self.observer = Observer(self.adapters, lambda: self.now, self.prometheus, PROMETHEUS)  # type: ignore[arg-type]
        spec = {
            "application": pipeline.application,
            "stages": [{**stage.to_spec(), "name": stage.name} for stage in pipeline.stages],
            "requireTag": pipeline.require_tag,
        }
        self.kube.put(
            {"metadata": {"name": pipeline.name, "namespace": NAMESPACE}, "spec": spec, "status": {}},
            custom_path("pipelines", NAMESPACE, pipeline.name),
        )
        for ref, image in images.items():
            self.deployment(ref, image)

    # --- the objects, as tests read and set them ---------------------------------------------------

    @property
    def images(self) -> Images:
        return Images(self)

    @property
    def quarantine(self) -> Quarantined:
        return Quarantined(self)

    @property
    def history(self) -> list[dict[str, Any]]:
        return ledger.entries(self.pipeline_status())

    @history.setter
    def history(self, entries: list[dict[str, Any]]) -> None:
        self.set_pipeline_status(production={"history": entries})

    @property
    def lock(self) -> locks.LockState:
        body = self.kube.objects.get(self.lock_path())
        return locks.from_status((body or {}).get("status"))

    @lock.setter
    def lock(self, state: locks.LockState) -> None:
        body = {"metadata": {"name": self.lock_name(), "namespace": NAMESPACE}, "spec": {}}
        self.kube.put({**body, "status": locks.to_status(state)}, self.lock_path())

    @property
    def tags(self) -> dict[str, str]:
        return self.registry.tags

    @tags.setter
    def tags(self, tags: dict[str, str]) -> None:
        self.registry.tags = tags

    @property
    def promotions(self) -> list[PromoteArtifacts]:
        return [e for e in self.effects if isinstance(e, PromoteArtifacts)]

    @property
    def jobs(self) -> dict[str, str]:
        """Test Jobs by name, with what each does."""
        prefix = job_path(NAMESPACE) + "/"
        return {
            body["metadata"]["name"]: body["metadata"]["annotations"]["outcome"]
            for key, body in self.kube.objects.items()
            if key.startswith(prefix)
        }

    def lock_name(self) -> str:
        return next((s.environment for s in self.pipe.stages if s.lock), "staging")

    def lock_path(self) -> str:
        return custom_path("environmentlocks", NAMESPACE, self.lock_name())

    def pipeline_status(self) -> dict[str, Any]:
        return dict(
            self.kube.objects[custom_path("pipelines", NAMESPACE, self.pipe.name)].get("status") or {}
        )

    def set_pipeline_status(self, **fields: Any) -> None:
        body = self.kube.objects[custom_path("pipelines", NAMESPACE, self.pipe.name)]
        body["status"] = {**(body.get("status") or {}), **fields}

    def deployment(self, ref: WorkloadRef, image: str, generation: int = 1) -> None:
        """A Deployment running `image`, fully rolled out."""
        path = workload_path(ref.kind, ref.namespace, ref.name)
        body = copy.deepcopy(self.kube.objects.get(path)) or {
            "metadata": {"name": ref.name, "namespace": ref.namespace, "generation": generation},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": ""}]}}},
        }
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        self.kube.put(body, path)
        self.roll_out(ref)

    def roll_out(self, ref: WorkloadRef) -> None:
        """The Deployment controller catches up with the newest spec."""
        body = self.kube.objects[workload_path(ref.kind, ref.namespace, ref.name)]
        generation = body["metadata"]["generation"]
        body["status"] = {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
        }

    # --- one tick --------------------------------------------------------------------------------

    def observe(self, release: ReleaseView, error: EffectFailure | None = None) -> Observation:
        return self.observer.observe(release, error)[1]

    def apply(self, release: ReleaseView, plan: Plan) -> EffectFailure | None:
        """Carry the plan's effects out with the real executors, then let the controllers act."""
        self.effects.extend(plan.effects)
        failure = execute(Context(release, self.pipe, self.now, self.adapters), plan.effects)
        self._finish_jobs()
        if self.controller:
            for ref in self.workloads:
                if workload_path(ref.kind, ref.namespace, ref.name) in self.kube.objects:
                    self.roll_out(ref)
        return failure

    def _finish_jobs(self) -> None:
        """A Job created this tick does what `job_outcome` says, for good."""
        prefix = job_path(NAMESPACE) + "/"
        for key, body in self.kube.objects.items():
            if not key.startswith(prefix) or "outcome" in (body["metadata"].get("annotations") or {}):
                continue
            body["metadata"].setdefault("annotations", {})["outcome"] = self.job_outcome
            condition = {"succeeded": "Complete", "failed": "Failed"}.get(self.job_outcome)
            if condition is not None:
                body["status"] = {"conditions": [{"type": condition, "status": "True"}]}
