"""Every reason Gantry writes: Release status and conditions, Events, alerts, lock tenures.

One vocabulary, so `kubectl get releases`, alert routing rules and the docs agree on spelling.
A StrEnum: the wire format is the plain string.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # --- bad input: the Release is Blocked until someone fixes the named field
    INVALID_PIPELINE = "InvalidPipeline"
    INVALID_TEST_JOB_TEMPLATE = "InvalidTestJobTemplate"
    INVALID_RELEASE_SOURCE = "InvalidReleaseSource"
    GIT_CACHE_OFF = "GitCacheOff"
    PIPELINE_NOT_FOUND = "PipelineNotFound"
    PIPELINE_MISMATCH = "PipelineMismatch"
    PIPELINE_CHANGED = "PipelineChanged"
    WORKLOAD_NOT_FOUND = "WorkloadNotFound"
    CONTAINER_NOT_FOUND = "ContainerNotFound"
    IMAGE_NOT_PINNED = "ImageNotPinned"
    ARTIFACT_MISSING = "ArtifactMissing"
    ARTIFACT_UNMATCHED = "ArtifactUnmatched"
    QUARANTINED = "Quarantined"
    NOT_VERIFIED = "NotVerified"
    VERSION_NOT_NEWER = "VersionNotNewer"
    PRODUCTION_BUSY = "ProductionBusy"
    FORBIDDEN = "Forbidden"
    # --- git source and version tags
    GIT_SOURCE_UNAVAILABLE = "GitSourceUnavailable"
    NOTHING_TO_RELEASE = "NothingToRelease"
    NOT_A_HOTFIX_BRANCH = "NotAHotfixBranch"
    NOT_ON_RELEASE_BRANCH = "NotOnReleaseBranch"
    NOT_TAGGED = "NotTagged"
    TAG_MISMATCH = "TagMismatch"
    TAG_PUSH_REJECTED = "TagPushRejected"
    TAGGED = "Tagged"
    # --- registry promotion
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    REGISTRY_TAGGED = "RegistryTagged"
    REGISTRY_AUTH_FAILED = "RegistryAuthFailed"
    REGISTRY_UNAVAILABLE = "RegistryUnavailable"
    REGISTRY_ERROR = "RegistryError"
    REGISTRY_TAG_COLLISION = "RegistryTagCollision"
    # --- locks
    LOCK_REQUESTED = "LockRequested"
    WAITING_FOR_LOCK = "WaitingForLock"
    WAITING_FOR_OLDER = "WaitingForOlderRelease"  # an older Release of its source is in the stage
    LOCK_FROZEN = "LockFrozen"
    FREEZE_OVERRIDDEN = "FreezeOverridden"  # a person's break-glass decision: this Release passes freezes
    INCIDENT_FREEZE = "IncidentFreeze"  # an Alertmanager alert froze (or no longer freezes) environments
    PRODUCTION_FROZEN = "ProductionFrozen"  # an emergency (or a freeze by hand) admits only hotfixes
    HOTFIX_MERGE_BACK = "HotfixMergeBack"  # a hotfix released: the command that brings it to main
    VERSION_TAKEN = "VersionTaken"  # another Release in flight carries that version
    UNTAGGED_VERSION = "UntaggedVersion"  # production takes only tagged versions (spec.requireTag)
    LOCK_ACQUIRED = "LockAcquired"
    LOCK_LOST = "LockLost"
    LEASE_TOO_SHORT = "LeaseTooShort"
    PREEMPTED = "Preempted"
    # --- deploy, rollout, test
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    DEPLOY_REJECTED = "DeployRejected"
    ROLLING_OUT = "RollingOut"
    ROLLED_OUT = "RolledOut"
    ROLLOUT_TIMEOUT = "RolloutTimeout"
    SUPERSEDED = "Superseded"
    SUPERSEDED_BY_NEWER = "SupersededByNewer"
    ZERO_REPLICAS = "ZeroReplicas"
    TEST_STARTED = "TestStarted"
    TEST_PASSED = "TestPassed"
    TEST_FAILED = "TestFailed"
    TEST_TIMEOUT = "TestTimeout"
    TEST_JOB_REJECTED = "TestJobRejected"
    TEST_JOB_DELETED = "TestJobDeleted"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    RESTORE_REFUSED = "RestoreRefused"
    # --- stages deploying through git (Pipeline spec.stages[].git), and controllers that fight
    COMMITTED = "Committed"  # the digests are committed and pushed; the GitOps tool applies them
    GIT_COMMIT_FAILED = "GitCommitFailed"  # a LiveFirst rollback is live, but git still names the bad images
    REVERTED = "Reverted"  # a live patch was set back by someone else; applied once more
    CONTROLLER_FIGHT = "ControllerFight"  # set back again: another controller owns the field
    CLUSTER_UNAVAILABLE = "ClusterUnavailable"  # a stage's other cluster: no Secret, no kubeconfig, no answer
    LEDGER_NOT_IN_GIT = "LedgerNotInGit"  # the ledger in git (spec.git.ledger) could not be appended to
    MERGE_REQUEST_OPENED = "MergeRequestOpened"  # a proposal's merge (pull) request, opened on the git host
    MERGE_REQUEST_FAILED = "MergeRequestFailed"  # the git host refused it: open it by hand from the branch
    PROPOSAL_NOT_MERGED = "ProposalNotMerged"  # a git stage's proposal branch was not merged in time
    STAGE_PASSED = "StagePassed"
    AWAITING_APPROVAL = "AwaitingApproval"
    SOAKING = "Soaking"
    SOAKED = "Soaked"
    SOAK_UNHEALTHY = "SoakUnhealthy"
    VERIFIED = "Verified"
    FAILED = "Failed"
    # --- production: bake, buttons, rollback
    BAKING = "Baking"
    BAKE_PASSED = "BakePassed"
    ERROR_RATE_BREACH = "ErrorRateBreach"
    METRICS_INCONCLUSIVE = "MetricsInconclusive"
    NO_PREVIOUS_RELEASE = "NoPreviousRelease"
    APPROVED = "Approved"
    ROLLBACK_DECIDED = "RollbackDecided"
    FAIL_FORWARD = "FailForward"
    EMERGENCY = "Emergency"
    DECISION_IGNORED = "DecisionIgnored"
    RELEASED = "Released"
    GUARD_ENDED = "GuardEnded"  # production.guard stopped watching (replaced, rolled back, an emergency)
    RETROSPECTIVE = "Retrospective"
    PAPERWORK_FAILED = "PaperworkFailed"
    # --- why a lock tenure ended (EnvironmentLock status.history)
    BLOCKED = "Blocked"
    PASSED = "Passed"
    PRODUCTION_ROLLED_BACK = "ProductionRolledBack"
    LEASE_EXPIRED = "LeaseExpired"
    RELEASE_DELETED = "ReleaseDeleted"
    WINDOW_CLOSED = "FreezeWindowClosed"
    INCIDENT_RESOLVED = "IncidentResolved"
