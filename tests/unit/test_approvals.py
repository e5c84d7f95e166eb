"""Approval policies: N approvals from listed users or groups, never by an author; each Approve
counted, refused (Ignored, saying why) or completing the policy."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gantry.domain.flow.model import ObservedLock
from gantry.domain.inputs import approvals
from gantry.domain.inputs.approvals import ApprovalPolicy
from gantry.domain.inputs.pipeline import Pipeline, parse_pipeline
from gantry.domain.vocabulary.problems import Problem
from gantry.plugin.views import what_it_changes
from tests.unit.test_stage_entry_and_soak import PRODUCTION, TARGETS
from tests.unit.test_stage_machine import decide, observe, release

POLICY = {"approvals": 2, "from": {"groups": ["shop-oncall"], "users": ["erin"]}, "notAuthor": True}


def canary(policy: dict[str, Any] = POLICY) -> Pipeline:
    stage = {"name": "canary", "promotion": "Manual", "approval": policy, "targets": TARGETS}
    parsed = parse_pipeline("shop", {"application": "shop", "stages": [stage, PRODUCTION]})
    assert isinstance(parsed, Pipeline), parsed
    return parsed


def approve(status: dict[str, Any], by: str, groups: tuple[str, ...] = ("shop-oncall",)) -> dict[str, Any]:
    decisions = status.get("decisions") or []
    decision = {"name": f"d{len(decisions)}", "action": "Approve", "decidedBy": by, "groups": list(groups)}
    return {**status, "decisions": [*decisions, decision]}


def tick(status: dict[str, Any], second: float, pipe: Pipeline) -> dict[str, Any]:
    """One look; the decisions stay in status as the operator's desk keeps them there."""
    view = replace(release(status), authors=("carol", "dave@example.com"))
    after = dict(decide(view, observe(second, pipe=pipe, lock=ObservedLock(held=False))).status)
    return {**after, "decisions": status.get("decisions") or []}


def test_two_approvals_from_the_group_neither_by_an_author_nor_twice_by_one_person() -> None:
    pipe = canary()
    status = tick({}, 0, pipe)
    assert status["phase"] == "AwaitingApproval"
    wanted = "0 of 2 approvals; waiting for 2 more: 2 approvals from user erin or group shop-oncall"
    assert f"{wanted}, not by an author" in status["message"]
    status = tick(approve(status, "carol"), 1, pipe)  # wrote it
    status = tick(approve(status, "dave"), 2, pipe)  # its commit's author (dave@example.com)
    status = tick(approve(status, "mallory", ("shop-developers",)), 3, pipe)  # not in the group
    status = tick(approve(status, "bob"), 4, pipe)
    status = tick(approve(status, "bob"), 5, pipe)  # again
    results = [(r["result"], r.get("message", "")) for r in status["decisionResults"]]
    assert [r for r, _ in results] == ["Ignored", "Ignored", "Ignored", "Applied", "Ignored"]
    assert "carol is an author of this Release" in results[0][1]
    assert "dave is an author" in results[1][1]
    assert "mallory may not approve here" in results[2][1]
    assert "bob has approved already" in results[4][1]
    assert status["phase"] == "AwaitingApproval"
    assert "1 of 2 approvals (bob); waiting for 1 more" in status["message"]
    status = tick(approve(status, "erin", ()), 6, pipe)  # listed by name
    assert status["phase"] == "Deploying", status["message"]  # entered: the policy is met
    assert run_of_status(status)["decidedBy"] == "bob, erin"
    assert [(a["by"], a["stage"]) for a in status["approvals"]] == [("bob", "canary"), ("erin", "canary")]


def run_of_status(status: dict[str, Any]) -> dict[str, Any]:
    return dict(status["stages"][-1])


def test_an_approval_policy_on_a_stage_that_promotes_on_its_own_names_the_field() -> None:
    stage = {"name": "canary", "approval": {"approvals": 2}, "targets": TARGETS}
    problem = parse_pipeline("shop", {"application": "shop", "stages": [stage, PRODUCTION]})
    assert isinstance(problem, Problem) and problem.field == "spec.stages[0].approval"
    assert "promotion: Manual" in problem.fix


def test_a_user_name_matches_a_commit_author_by_email_or_its_local_part() -> None:
    assert approvals.is_author("alice", ["alice@example.com"])
    assert approvals.is_author("alice@example.com", ["alice"])
    assert not approvals.is_author("alicia", ["alice@example.com"])
    assert approvals.authors({approvals.CREATED_BY: "carol", "other": "x"}) == ("carol",)
    assert ApprovalPolicy(1).describe() == "1 approval"


def test_a_person_about_to_approve_sees_the_changes_the_tickets_and_each_digest_against_production() -> None:
    old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    release = {
        "spec": {
            "artifacts": [
                {"name": "web", "image": f"registry.example.com/shop/web@{new}"},
                {"name": "worker", "image": f"registry.example.com/shop/worker@{old}"},
                {"name": "cron", "image": f"registry.example.com/shop/cron@{new}"},
            ]
        },
        "status": {
            "changelog": [
                {"type": "feat", "scope": "SHOP-1", "description": "a checkout button", "commit": "1"},
                {"type": "fix", "scope": "HOT-7", "description": "totals", "commit": "2"},
            ]
        },
    }
    history = [
        {
            "release": "team/shop-v1",
            "result": "Released",
            "images": [
                {"workload": "Deployment/prod/web", "container": "web", "image": f"r/web@{old}"},
                {"workload": "Deployment/prod/worker", "container": "worker", "image": f"r/worker@{old}"},
            ],
        }
    ]
    assert what_it_changes(release, history) == [
        "changes: feat(SHOP-1): a checkout button; fix(HOT-7): totals",
        "tickets: HOT-7, SHOP-1",
        "web: sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb",
        "worker: sha256:aaaaaaaaaaaa (unchanged)",
        "cron: nothing in production → sha256:bbbbbbbbbbbb",
    ]
