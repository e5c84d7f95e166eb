"""`gantry version next` and `gantry commits check` on real git repositories (a bare origin and clones)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gantry import cli
from tests.git.repos import Clone, origin_and_clone

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Clone:
    return origin_and_clone(tmp_path, "origin")[1]


def run(repo: Clone, *args: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "gantry", *args, "--repo", str(repo.path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def next_tag(repo: Clone, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = cli.main(["version", "next", "--repo", str(repo.path), *extra])
    return code, capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (["feat(JIRA-1): a feature"], "v1.5.0"),
        (["fix(JIRA-1): a fix"], "v1.4.1"),
        (["perf(JIRA-1): faster"], "v1.4.1"),
        (["fix(JIRA-1): a fix", "feat(JIRA-2): a feature"], "v1.5.0"),
        (["feat(JIRA-1)!: new API"], "v2.0.0"),
        (["fix(JIRA-1): drop old flag\n\nBREAKING CHANGE: --old is gone"], "v2.0.0"),
        (["refactor(JIRA-1): tidy\n\nBREAKING-CHANGE: renamed"], "v2.0.0"),
        (["feat: no scope is still a feature"], "v1.5.0"),
    ],
)
def test_bumps_from_the_latest_release_tag(
    repo: Clone, capsys: pytest.CaptureFixture[str], messages: list[str], expected: str
) -> None:
    repo.commit("feat(JIRA-0): first")
    repo.git("tag", "v1.4.0")
    for message in messages:
        repo.commit(message)
    assert next_tag(repo, capsys) == (0, expected)


def test_other_types_alone_make_no_release(repo: Clone) -> None:
    repo.commit("feat(JIRA-0): first")
    repo.git("tag", "v1.4.0")
    for kind in ("docs", "chore", "test", "ci", "refactor", "style", "build"):
        repo.commit(f"{kind}(JIRA-9): housekeeping")
    repo.commit("Fix typo")  # not conventional: ignored
    code, out, err = run(repo, "version", "next")
    assert (code, out) == (3, "")
    assert err == "no release: no feat, fix, perf or breaking change since v1.4.0"


def test_without_tags_the_base_is_v0_and_breaking_bumps_minor_while_major_is_zero(
    repo: Clone, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.commit("feat(JIRA-1): first feature")
    assert next_tag(repo, capsys) == (0, "v0.1.0")
    repo.git("tag", "v0.1.0")
    repo.commit("feat(JIRA-2)!: rework")
    assert next_tag(repo, capsys) == (0, "v0.2.0")
    assert next_tag(repo, capsys, "--major-on-zero") == (0, "v1.0.0")


def test_latest_is_the_highest_reachable_semver_not_the_newest_tag_and_others_are_ignored(
    repo: Clone, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.commit("feat(JIRA-1): one")
    repo.git("tag", "v1.10.0")
    repo.commit("fix(JIRA-2): two")
    repo.git("tag", "v1.9.0")  # newer, but lower
    repo.git("tag", "v2.0.0-rc.1")  # not a release tag
    repo.git("tag", "release-3")
    repo.commit("fix(JIRA-3): three")
    assert next_tag(repo, capsys) == (0, "v1.10.1")


def test_tags_not_reachable_from_the_revision_do_not_count(
    repo: Clone, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.commit("feat(JIRA-1): base")
    repo.git("tag", "v1.0.0")
    repo.git("checkout", "-q", "-b", "other")
    repo.commit("feat(JIRA-2): elsewhere")
    repo.git("tag", "v5.0.0")
    repo.git("checkout", "-q", "main")
    repo.commit("fix(JIRA-3): here")
    assert next_tag(repo, capsys, "--rev", "main") == (0, "v1.0.1")


def test_commits_reached_through_merge_commits_count(repo: Clone, capsys: pytest.CaptureFixture[str]) -> None:
    repo.commit("feat(JIRA-1): base")
    repo.git("tag", "v1.0.0")
    repo.git("checkout", "-q", "-b", "nyefan/JIRA-2")
    repo.commit("feat(JIRA-2): on the branch")
    repo.git("checkout", "-q", "main")
    repo.commit("docs(JIRA-3): readme")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge branch 'nyefan/JIRA-2'", "nyefan/JIRA-2")
    assert next_tag(repo, capsys) == (0, "v1.1.0")
    code = cli.main(["version", "next", "--repo", str(repo.path), "--explain"])
    explanation = capsys.readouterr().err
    assert code == 0 and "feat:" in explanation and "JIRA-2: on the branch" in explanation


def test_not_a_repository_and_a_bad_revision_exit_2(repo: Clone, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    code, _, err = run(Clone(plain), "version", "next")
    assert code == 2 and "not a git repository" in err
    repo.commit("feat(JIRA-1): x")
    code, _, err = run(repo, "version", "next", "--rev", "no-such-branch")
    assert code == 2 and "unknown revision 'no-such-branch'" in err


def test_commits_check_names_each_offender_and_skips_merges(repo: Clone) -> None:
    repo.commit("feat(JIRA-1): good")
    bad = [
        repo.commit("fixed stuff"),
        repo.commit("feat: no ticket"),
        repo.commit("feature(JIRA-2): unknown type"),
    ]
    repo.git("checkout", "-q", "-b", "topic")
    repo.commit("fix(OPS-7): fine")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge branch 'topic'", "topic")
    code, _, err = run(repo, "commits", "check")
    assert code == 1
    lines = err.splitlines()
    assert [line.split()[0] for line in lines] == [sha[:10] for sha in reversed(bad)]
    assert "the scope must be the ticket identifier" in err and "unknown type 'feature'" in err
    assert run(repo, "commits", "check", "--range", f"{bad[-1]}..HEAD")[0] == 0
