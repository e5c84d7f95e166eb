"""docs/ci: the CI templates' gantry commands, run as the templates run them, on a real repository
checked out the way CI checks out a merge request (a detached HEAD at the branch's commit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.git.repos import Clone, origin_and_clone
from tests.harness.cluster import ROOT

TEMPLATES = ROOT / "docs" / "ci"


def gantry_lines(steps: list[str]) -> list[str]:
    return [step for step in steps if step.startswith("gantry ")]


@pytest.fixture
def merge_request(tmp_path: Path) -> tuple[Clone, str]:
    work = origin_and_clone(tmp_path, "origin")[1]
    work.commit("chore(JIRA-1): start")
    work.git("checkout", "-q", "-b", "nyefan/JIRA-1234")
    work.commit("feat(JIRA-1234): checkout by invoice")
    head = work.git("rev-parse", "HEAD").strip()
    work.git("checkout", "-q", "--detach", head)  # what CI checks out
    return work, head


def run_shell(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the package's gantry command
    return subprocess.run(
        line, shell=True, cwd=cwd, env={**os.environ, **env, "PATH": path}, capture_output=True, text=True
    )


def test_the_gitlab_template_checks_a_merge_request_with_gantry(merge_request: tuple[Clone, str]) -> None:
    work, head = merge_request
    template = yaml.safe_load((TEMPLATES / "gitlab-ci.yml").read_text())
    env = {
        "CI_COMMIT_SHA": head,
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "nyefan/JIRA-1234",
    }
    lines = gantry_lines(template["branch rules"]["script"])
    assert len(lines) == 2
    for line in lines:
        done = run_shell(line, work.path, env)
        assert done.returncode == 0, (line, done.stderr)
    # The same commands refuse a branch that breaks the rules.
    work.git("checkout", "-q", "nyefan/JIRA-1234")
    bad = work.commit("wip")
    failed = run_shell(lines[0], work.path, {**env, "CI_COMMIT_SHA": bad})
    assert failed.returncode == 1 and "'wip': not a conventional commit header" in failed.stderr
    assert template["build and push"]["rules"][0]["if"] == "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"
    assert any("$IMAGE:$CI_COMMIT_SHA" in step for step in template["build and push"]["script"])


def test_the_github_template_checks_a_pull_request_with_gantry(merge_request: tuple[Clone, str]) -> None:
    work, _ = merge_request
    template = yaml.safe_load((TEMPLATES / "github-actions.yml").read_text())
    steps = [s["run"] for s in template["jobs"]["checks"]["steps"] if "run" in s]
    lines = [
        line.replace("${{ github.base_ref }}", "main").replace("${{ github.head_ref }}", "nyefan/JIRA-1234")
        for line in gantry_lines(steps)
    ]
    assert len(lines) == 2
    for line in lines:
        done = run_shell(line, work.path, {})
        assert done.returncode == 0, (line, done.stderr)
    assert any("${{ github.sha }}" in s.get("run", "") for s in template["jobs"]["build"]["steps"])
