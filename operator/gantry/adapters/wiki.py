"""The seed's paperwork after a bad production release, in git: the HOT-<n> branch, and the
HOT-<n> / ROLLBACK-<n> retrospective pages in a git-backed wiki (GitLab and GitHub wikis are
git repositories).

Everything here is idempotent by (kind, Release uid): the ticket number is allocated once and
recorded in the Pipeline's status, an existing branch at the same commit is kept, and a page
with the same content is not committed again. So an operator killed half-way redoes nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
from gantry.adapters.git import REMOTE_TIMEOUT, GitError, remote_options, with_credentials

DEFAULT_TEMPLATE = """\
# {ticket}: {kind} of {application} {version}

- Release: {release}
- Version: {version} (commit {revision})
- Decided by: {decided_by}, {time}
- Why: {reason}

## Changes in this version

{changelog}

## Timeline

_What happened, when, and who noticed._

## Root cause

## What went well / what did not

## Follow-ups

- [ ] ...
"""


@dataclass(frozen=True)
class Paperwork:
    kind: str  # "Emergency" or "Rollback"
    ticket: str  # HOT-3, ROLLBACK-2
    application: str
    release: str
    version: str
    revision: str | None
    decided_by: str
    reason: str
    time: str
    changelog: list[Mapping[str, str]]


PREFIX = {"Emergency": "HOT", "Rollback": "ROLLBACK"}


def allocate(
    tickets: list[dict[str, Any]], kind: str, uid: str, release: str, at: str
) -> list[dict[str, Any]]:
    """The ticket list with one for (kind, Release uid): the existing one, or the next number."""
    if any(t["kind"] == kind and t["uid"] == uid for t in tickets):
        return tickets
    prefix = PREFIX[kind]
    numbers = [int(t["id"].split("-")[1]) for t in tickets if t["id"].startswith(f"{prefix}-")]
    ticket = {
        "id": f"{prefix}-{max(numbers, default=0) + 1}",
        "kind": kind,
        "uid": uid,
        "release": release,
        "at": at,
    }
    return [*tickets, ticket]


def render_page(paper: Paperwork, template: str = DEFAULT_TEMPLATE) -> str:
    lines = [f"- {c['type']}({c['scope']}): {c['description']} ({c['commit']})" for c in paper.changelog]
    values = {
        "ticket": paper.ticket,
        "kind": paper.kind,
        "application": paper.application,
        "release": paper.release,
        "version": paper.version,
        "revision": (paper.revision or "unknown")[:12],
        "decided_by": paper.decided_by,
        "reason": paper.reason,
        "time": paper.time,
        "changelog": "\n".join(lines) or "_no changelog recorded_",
    }
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return out


class Wiki:
    """A working clone of a wiki repository under `root`, for writing pages."""

    def __init__(
        self,
        root: str | Path,
        credentials: Callable[[], tuple[str, str] | None] = lambda: None,
        timeout: float = REMOTE_TIMEOUT,
    ) -> None:
        self.root = Path(root)
        self.credentials = credentials
        self.remote = remote_options(timeout)

    def write(self, url: str, page: str, content: str, message: str) -> bool:
        """Write (or keep) `page`; True if a commit was pushed."""
        path = self.root / ("wiki-" + hashlib.sha256(url.encode()).hexdigest()[:16])
        remote = with_credentials(url, self.credentials())
        try:
            if not path.exists():  # the command, not Repo.clone_from: only a command can be timed out
                self.root.mkdir(parents=True, exist_ok=True)
                git.Git(self.root).clone("--quiet", "--", remote, str(path), **self.remote)
            repo = git.Repo(path)
            repo.git.remote("set-url", "origin", remote)
            for attempt in range(3):
                if repo.git.ls_remote("--heads", "origin", **self.remote):
                    repo.git.fetch("--quiet", "origin", **self.remote)
                    repo.git.reset("--hard", "--quiet", f"origin/{_branch(repo)}")
                target = path / f"{page}.md"
                if target.exists() and target.read_text() == content:
                    return False
                target.write_text(content)
                repo.git.add(target.name)
                with repo.git.custom_environment(
                    GIT_AUTHOR_NAME="Gantry",
                    GIT_AUTHOR_EMAIL="gantry@localhost",
                    GIT_COMMITTER_NAME="Gantry",
                    GIT_COMMITTER_EMAIL="gantry@localhost",
                ):
                    repo.git.commit("--quiet", "-m", message)
                try:
                    repo.git.push("--quiet", "origin", f"HEAD:refs/heads/{_branch(repo)}", **self.remote)
                    return True
                except git.GitCommandError:
                    if attempt == 2:
                        raise
        except git.GitCommandError as error:
            raise GitError(f"wiki {url}: {' '.join(str(error.stderr or error).split())[:300]}") from None
        return False


def push_branch(repo: git.Repo, branch: str, revision: str, timeout: float = REMOTE_TIMEOUT) -> None:
    """Create `branch` at `revision` in origin; one already there at that commit is fine, elsewhere is not."""
    remote = remote_options(timeout)
    try:
        existing = str(repo.git.ls_remote("origin", f"refs/heads/{branch}", **remote)).split()
        if existing and existing[0] != revision:
            raise GitError(f"branch {branch} already exists at {existing[0][:12]}, not {revision[:12]}")
        if not existing:
            repo.git.push("origin", f"{revision}:refs/heads/{branch}", **remote)
    except git.GitCommandError as error:
        raise GitError(f"branch {branch}: {' '.join(str(error.stderr or error).split())[:300]}") from None


def _branch(repo: git.Repo) -> str:
    try:
        return str(repo.active_branch.name)
    except TypeError:  # detached or unborn: the wiki's default
        return "main"
