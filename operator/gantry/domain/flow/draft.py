"""The plan one tick builds: a mutable draft of the Release's status, effects and events.

Local to `release.decide` and the step handlers it routes to; the primitives every step shares
(move, block, rejected, elapsed) live here, so the stage, production and registry modules use
them without knowing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from gantry.domain.flow.model import Alert, Effect, EffectFailure, Event, Observation, ReleaseView, StageRun
from gantry.domain.inputs.pipeline import Pipeline
from gantry.domain.vocabulary.phases import PHASE_OF_STEP, Phase, Step
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import from_rfc3339, to_rfc3339

# Blocked only until another Release is done with production: waiting in line, nothing to fix.
QUIET_BLOCKS = frozenset({Reason.PRODUCTION_BUSY})


@dataclass
class Draft:
    release: ReleaseView
    obs: Observation
    phase: Phase
    stage_index: int
    run: StageRun | None
    reason: str
    message: str
    effects: list[Effect] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    error_handled: bool = False
    version: str = ""
    tag: Mapping[str, Any] | None = None  # status.tag: the version tag, its revision, pushed yet
    changelog: tuple[Mapping[str, str], ...] = ()
    pipeline: Pipeline | Problem = field(default_factory=lambda: Problem("", "", "", ""))  # as pinned
    pinned: Mapping[str, Any] | None = None  # status.pipeline: the stages pinned at the first stage
    approved_by: str | None = None  # who approved promotion to production (the latest Approve)
    approved_reason: str | None = None  # and why, as they said it
    ignored: str | None = None  # why the decision applied this tick changed nothing
    results: list[dict[str, Any]] = field(default_factory=list)  # status.decisionResults
    guard: dict[str, Any] | None = None  # status.guard: production watched after its release
    approvals: list[dict[str, Any]] = field(default_factory=list)  # status.approvals: under a policy
    # A way-station (the next stage's door, a lock asked for): the next look follows at once and
    # nothing outside needs this status on record first, so it may be written with the next one.
    passing: bool = False

    @property
    def now(self) -> str:
        return to_rfc3339(self.obs.now)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def move(self, step: Step, reason: str, message: str, **fields: Any) -> None:
        """The current stage run goes to `step`; the Release's phase follows it."""
        assert self.run is not None
        self.run = replace(self.run, step=step, reason=reason, message=message, **fields)
        self.reason, self.message = reason, message
        if step in PHASE_OF_STEP:
            self.phase = PHASE_OF_STEP[step]

    def wait(self, reason: str, message: str) -> None:
        """Waiting on something that will end by itself: said once (an Event when the message
        changes), not on every tick; the phase stays as it is."""
        if self.message != message:
            self.event("Normal", reason, message)
        self.reason, self.message = reason, message

    def block(self, problem: Problem) -> None:
        """Blocked until someone fixes the named field; announced once (an Event, and an alert
        naming the fix), not on every tick."""
        if self.phase != Phase.BLOCKED or self.reason != problem.reason or self.message != problem.describe():
            self.event("Warning", problem.reason, problem.describe())
            if problem.reason not in QUIET_BLOCKS:
                said = f"Release {self.release.key} is Blocked ({problem.reason}): {problem.describe()}"
                self.effects.append(Alert("warning", problem.reason, said))
        self.phase, self.reason, self.message = Phase.BLOCKED, problem.reason, problem.describe()

    def rejected(self, effect: type[Any]) -> EffectFailure | None:
        """How an effect of this type failed on the last try, if it did; each failure is acted on once."""
        error = self.obs.error
        if error is None or error.effect is not effect or self.error_handled:
            return None
        self.error_handled = True
        return error

    def elapsed(self, since: str | None) -> timedelta:
        return self.obs.now - from_rfc3339(since) if since else timedelta(0)


# (draft, reason, detail): stop the stage and put back what it changed: a stage's own rollback, or
# production's; the router binds which (domain.flow.release), so the shared steps know neither.
Rollback = Callable[[Draft, str, str], None]
