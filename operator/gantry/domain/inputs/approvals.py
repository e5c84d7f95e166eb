"""Approval policies: how many people must approve a Release into a stage (production, or any
`promotion: Manual` stage), who may, and that none of them wrote it.

Each approval is a ReleaseDecision (action Approve). Who decided is `spec.decidedBy` and the
groups they claim are `spec.groups`; the admission policy in examples/rbac.yaml holds both to
what the API server knows of the requester, so the policy here may trust them. The Release's
authors are the person who created it (annotation gantry.dev/created-by, held to the creator by
the same admission policy) and the author of its commit (annotation gantry.dev/commit-author,
written by its ReleaseSource from git).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

CREATED_BY = "gantry.dev/created-by"
COMMIT_AUTHOR = "gantry.dev/commit-author"


@dataclass(frozen=True)
class ApprovalPolicy:
    approvals: int = 1  # distinct people
    users: tuple[str, ...] = ()  # who may approve (with groups; neither: anyone RBAC lets)
    groups: tuple[str, ...] = ()
    not_author: bool = False  # the Release's creator and its commit's author may not approve

    def describe(self) -> str:
        """e.g. `2 approvals from user carol or group shop-leads, not by an author`."""
        who = [f"user {', '.join(self.users)}"] if self.users else []
        who += [f"group {', '.join(self.groups)}"] if self.groups else []
        said = f"{self.approvals} approval{'s' * (self.approvals > 1)}"
        said += f" from {' or '.join(who)}" if who else ""
        return said + (", not by an author" if self.not_author else "")

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"approvals": self.approvals}
        if self.users or self.groups:
            out["from"] = {"users": list(self.users), "groups": list(self.groups)}
        if self.not_author:
            out["notAuthor"] = True
        return out


def parse(where: str, raw: Mapping[str, Any] | None) -> ApprovalPolicy | Problem | None:
    if not raw:
        return None
    approvals = int(raw.get("approvals") or 1)
    source = raw.get("from") or {}
    users = tuple(str(u) for u in source.get("users") or ())
    groups = tuple(str(g) for g in source.get("groups") or ())
    if approvals < 1:
        return Problem(
            Reason.INVALID_PIPELINE, f"{where}.approvals", "must be at least 1", "e.g. approvals: 2"
        )
    return ApprovalPolicy(approvals, users, groups, bool(raw.get("notAuthor", False)))


def authors(annotations: Mapping[str, str] | None) -> tuple[str, ...]:
    found = [(annotations or {}).get(k, "") for k in (CREATED_BY, COMMIT_AUTHOR)]
    return tuple(a for a in found if a)


def is_author(who: str, written_by: Iterable[str]) -> bool:
    """A Kubernetes user name against a creator's name or a commit author's email: the same
    name, the email itself, or its local part (alice is alice@example.com). Matching too much
    only ever refuses an approval, never lets one through."""
    for author in written_by:
        if who == author or (author.partition("@")[0] == who.partition("@")[0] and "@" in author + who):
            return True
    return False


def refusal(
    policy: ApprovalPolicy,
    who: str,
    groups: Sequence[str],
    written_by: Sequence[str],
    already: Sequence[Mapping[str, Any]],
) -> str | None:
    """Why this person's Approve does not count towards the policy, or None when it does."""
    if policy.users or policy.groups:
        member = who in policy.users or any(g in policy.groups for g in groups)
        if not member:
            return (
                f"{who} may not approve here: the stage's approval policy takes {policy.describe()} "
                "(a group counts when the ReleaseDecision names it in spec.groups, as the plugin does)"
            )
    if policy.not_author and is_author(who, written_by):
        return f"{who} is an author of this Release ({', '.join(written_by)}): its approvers must be others"
    if any(a.get("by") == who for a in already):
        return f"{who} has approved already: the policy needs {policy.approvals} different people"
    return None


def state(policy: ApprovalPolicy, given: Sequence[Mapping[str, Any]]) -> str:
    """e.g. `1 of 2 approvals (bob); waiting for 1 more: 2 approvals from group shop-leads`."""
    names = ", ".join(str(a.get("by")) for a in given)
    waiting = max(policy.approvals - len(given), 0)
    said = f"{len(given)} of {policy.approvals} approval{'s' * (policy.approvals > 1)}"
    said += f" ({names})" if names else ""
    return said + (f"; waiting for {waiting} more: {policy.describe()}" if waiting else "")
