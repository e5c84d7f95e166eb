"""The seed's paperwork in git: HOT-<n> branch and pages, ROLLBACK-<n> pages, allocated once."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gantry.adapters import wiki
from gantry.adapters.effects import Adapters, Context
from gantry.adapters.git import GitError, Mirrors
from gantry.adapters.git_effects import paperwork
from gantry.domain.flow.model import ReleaseView, Retrospective
from gantry.domain.inputs.pipeline import parse_pipeline
from tests.git.repos import bare, origin_and_clone


class FakeResources:
    """Only what paperwork touches: the Pipeline's status (tickets) and Secrets."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}

    def update_ledger(self, namespace: str, name: str, change: Any) -> None:
        self.status.update(change(dict(self.status)))

    def read_secret(self, namespace: str, name: str) -> None:
        return None


def show(repo: Path, ref: str) -> str:
    return subprocess.run(["git", "show", ref], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_emergency_and_rollback_paperwork_is_written_once(tmp_path: Path) -> None:
    (source, work), pages = origin_and_clone(tmp_path, "shop"), bare(tmp_path, "shop.wiki")
    revision = work.commit("feat(JIRA-1): invoices")
    work.git("push", "-q", "origin", "main")
    pipeline = parse_pipeline(
        "shop",
        {
            "application": "shop",
            "git": {"wiki": {"repository": str(pages)}},
            "stages": [{"name": "staging", "targets": [{"namespace": "s", "name": "w"}]}],
        },
    )
    resources = FakeResources()
    events: list[Any] = []
    adapters = Adapters(
        resources,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda body, event: events.append(event),
        Mirrors(tmp_path / "cache"),
        None,  # type: ignore[arg-type]
    )
    release = ReleaseView(
        "team",
        "shop-v2",
        "uid-2",
        1,
        "shop",
        "shop",
        "v2.0.0",
        {},
        {
            "changelog": [
                {"type": "feat", "scope": "JIRA-1", "description": "invoices", "commit": revision[:12]}
            ]
        },
        repository=str(source),
        revision=revision,
    )

    for _ in range(2):  # the second time (a retry after a crash) changes nothing
        paperwork(
            Context(release, pipeline, datetime.now(UTC), adapters),
            Retrospective("Emergency", "checkout down", "bob"),
        )
    paperwork(
        Context(release, pipeline, datetime.now(UTC), adapters),
        Retrospective("Rollback", "rolled back instead", "bob"),
    )

    assert [(t["id"], t["kind"]) for t in resources.status["tickets"]] == [
        ("HOT-1", "Emergency"),
        ("ROLLBACK-1", "Rollback"),
    ]
    branch = subprocess.run(
        ["git", "rev-parse", "refs/heads/HOT-1"], cwd=source, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert branch == revision  # the hotfix branch starts at what production runs
    page = show(pages, "main:HOT-1.md")
    assert page.startswith("# HOT-1: Emergency of shop v2.0.0")
    assert "Decided by: bob" in page and "feat(JIRA-1): invoices" in page
    assert "# ROLLBACK-1: Rollback of shop v2.0.0" in show(pages, "main:ROLLBACK-1.md")
    log = subprocess.run(
        ["git", "log", "--format=%s", "main"], cwd=pages, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(log) == 2  # one commit per page, none for the retry
    assert [e.reason for e in events] == ["Retrospective"] * 3


def test_ticket_numbers_count_per_kind() -> None:
    tickets: list[dict[str, Any]] = []
    for uid in ("a", "b"):
        tickets = wiki.allocate(tickets, "Emergency", uid, f"ns/{uid}", "t")
    tickets = wiki.allocate(tickets, "Rollback", "a", "ns/a", "t")
    tickets = wiki.allocate(tickets, "Emergency", "a", "ns/a", "t")
    assert [t["id"] for t in tickets] == ["HOT-1", "HOT-2", "ROLLBACK-1"]


def test_a_hot_branch_already_elsewhere_is_refused(tmp_path: Path) -> None:
    source, work = origin_and_clone(tmp_path, "shop")
    first = work.commit("feat(JIRA-1): a")
    second = work.commit("fix(JIRA-2): b")
    work.git("push", "-q", "origin", "main", f"{first}:refs/heads/HOT-1")
    repo = Mirrors(tmp_path / "cache").open(str(source))
    with pytest.raises(GitError, match="already exists"):
        wiki.push_branch(repo.repo, "HOT-1", second)
