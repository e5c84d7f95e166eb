"""Where a Release stands (Phase, for people and `kubectl get`) and where its current stage run
stands (Step, for the router). One home for both, and for which phases are final or waiting.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"
    AWAITING_APPROVAL = "AwaitingApproval"
    BLOCKED = "Blocked"
    QUEUED = "Queued"
    PROMOTING = "Promoting"
    DEPLOYING = "Deploying"
    TESTING = "Testing"
    SOAKING = "Soaking"
    ROLLING_BACK = "RollingBack"
    VERIFIED = "Verified"
    FAILED = "Failed"
    BAKING = "Baking"
    AWAITING_DECISION = "AwaitingDecision"
    HELD = "Held"
    RELEASED = "Released"
    ROLLED_BACK = "RolledBack"
    EMERGENCY = "Emergency"
    SUPERSEDED = "Superseded"  # a newer commit's Release took its place before it began its stage


# Nothing more happens by itself; only a decision (rollback, emergency) can move a Release on.
FINAL = frozenset({Phase.FAILED, Phase.RELEASED, Phase.ROLLED_BACK, Phase.EMERGENCY, Phase.SUPERSEDED})
# Ended without reaching production: a version it carried but never tagged is free again.
GAVE_UP = frozenset({Phase.FAILED, Phase.SUPERSEDED})
# On a final Release (set by Gantry once Kopf's finalizer is off): the operator's watch leaves it
# out, so 20,000 finished Releases cost it neither memory nor start-up time. A decision that
# moves one on (a rollback of a Released one) takes the label off again.
FINISHED_LABEL = "gantry.dev/finished"
# Waiting for a person (approval, one of the three buttons) or a deadline: looked at less often.
WAITING = frozenset({Phase.AWAITING_APPROVAL, Phase.VERIFIED, Phase.AWAITING_DECISION, Phase.HELD})


class Step(StrEnum):
    PENDING = "Pending"
    AWAITING_APPROVAL = "AwaitingApproval"  # a stage with promotion: Manual, before it starts
    WAITING_FOR_LOCK = "WaitingForLock"
    PROMOTING = "Promoting"
    DEPLOYING = "Deploying"
    ROLLING_OUT = "RollingOut"
    TESTING = "Testing"
    SOAKING = "Soaking"  # passed, and must run healthy for soakSeconds before the next stage
    ROLLING_BACK = "RollingBack"
    PASSED = "Passed"
    FAILED = "Failed"
    BAKING = "Baking"
    AWAITING_DECISION = "AwaitingDecision"
    HELD = "Held"


class Activity(StrEnum):
    """What a stage is doing at a step: the one list every rule about leaving, giving way and
    waiting reads (a test keeps every Step in it, so a new step cannot be forgotten)."""

    NOT_BEGUN = "NotBegun"  # nothing of the stage deployed; at most a place in a queue
    PREPARING = "Preparing"  # outside the cluster (the registry): no workload changed yet
    IN_STAGE = "InStage"  # its images are (being) put in place and not accepted yet
    UNDOING = "Undoing"  # putting back what it changed
    OVER = "Over"  # passed or failed: the stage has nothing more to do


ACTIVITY = {
    Step.PENDING: Activity.NOT_BEGUN,
    Step.AWAITING_APPROVAL: Activity.NOT_BEGUN,
    Step.WAITING_FOR_LOCK: Activity.NOT_BEGUN,
    Step.PROMOTING: Activity.PREPARING,
    Step.DEPLOYING: Activity.IN_STAGE,
    Step.ROLLING_OUT: Activity.IN_STAGE,
    Step.TESTING: Activity.IN_STAGE,
    Step.SOAKING: Activity.IN_STAGE,
    Step.BAKING: Activity.IN_STAGE,  # production, or a canary: watched, not yet accepted
    Step.AWAITING_DECISION: Activity.IN_STAGE,
    Step.HELD: Activity.IN_STAGE,
    Step.ROLLING_BACK: Activity.UNDOING,
    Step.PASSED: Activity.OVER,
    Step.FAILED: Activity.OVER,
}
NOT_BEGUN = frozenset(step for step, activity in ACTIVITY.items() if activity == Activity.NOT_BEGUN)
IN_STAGE = frozenset(step for step, activity in ACTIVITY.items() if activity == Activity.IN_STAGE)

PHASE_OF_STEP = {
    Step.PENDING: Phase.PENDING,
    Step.AWAITING_APPROVAL: Phase.AWAITING_APPROVAL,
    Step.WAITING_FOR_LOCK: Phase.QUEUED,
    Step.PROMOTING: Phase.PROMOTING,
    Step.DEPLOYING: Phase.DEPLOYING,
    Step.ROLLING_OUT: Phase.DEPLOYING,
    Step.TESTING: Phase.TESTING,
    Step.SOAKING: Phase.SOAKING,
    Step.ROLLING_BACK: Phase.ROLLING_BACK,
    Step.BAKING: Phase.BAKING,
    Step.AWAITING_DECISION: Phase.AWAITING_DECISION,
    Step.HELD: Phase.HELD,
}
# Steps in which the stage has (or may have) changed its workloads while holding its lock.
WORKING = frozenset(
    {
        Step.DEPLOYING,
        Step.ROLLING_OUT,
        Step.TESTING,
        Step.SOAKING,
        Step.ROLLING_BACK,
        Step.PASSED,
        Step.FAILED,
    }
)
