"""`gantry branch check` on real repositories: the seed's rules for a ticket branch before it merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.git.repos import Clone, origin_and_clone
from tests.git.test_version_next import run


@pytest.fixture
def repo(tmp_path: Path) -> Clone:
    work = origin_and_clone(tmp_path, "origin")[1]
    work.commit("chore(JIRA-1): start")
    return work


def test_a_rebased_ticket_branch_with_its_tickets_commits_passes(repo: Clone) -> None:
    repo.git("checkout", "-q", "-b", "nyefan/JIRA-1234")
    repo.commit("feat(JIRA-1234): checkout by invoice")
    repo.commit("fix(JIRA-1234): rounding")
    assert run(repo, "branch", "check") == (0, "", "")


def test_each_broken_rule_is_one_line_naming_what_to_do(repo: Clone) -> None:
    repo.git("checkout", "-q", "-b", "feature-x")
    repo.commit("feat(JIRA-7): another ticket's scope")
    repo.commit("wip")
    repo.git("checkout", "-q", "main")
    repo.commit("fix(JIRA-2): main moved on")
    repo.git("checkout", "-q", "feature-x")
    repo.git("merge", "-q", "--no-edit", "main")  # a merge instead of a rebase

    code, out, err = run(repo, "branch", "check")
    lines = err.splitlines()
    assert code == 1 and out == ""
    assert lines[0] == "branch 'feature-x': name it uid/TICKET-IDENTIFIER, e.g. nyefan/JIRA-1234"
    assert any("is a merge commit: rebuild the history by rebasing" in line for line in lines)
    assert any("'wip': not a conventional commit header" in line for line in lines)
    assert not any("not rebased" in line for line in lines)  # merged main in: it contains main, but...


def test_a_branch_behind_main_or_on_another_ticket_is_refused(repo: Clone) -> None:
    repo.git("checkout", "-q", "-b", "nyefan/JIRA-9")
    repo.commit("feat(JIRA-8): the wrong ticket")
    repo.git("checkout", "-q", "main")
    repo.commit("fix(JIRA-2): main moved on")
    code, _, err = run(repo, "branch", "check", "--branch", "nyefan/JIRA-9")
    assert code == 1
    assert "branch 'nyefan/JIRA-9' is not rebased onto main: git rebase main" in err
    assert "its scope is 'JIRA-8', not the branch's ticket 'JIRA-9'" in err
