"""Git through GitPython: release tags reachable from a revision, and the commits since one.

One `git log` / `git tag --merged` each, whatever the history's length: the version benchmark
runs this over 20,000 commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import git
from gantry.domain.inputs.versions import RELEASE_TAG, Commit, parse_commit

FIELD, RECORD = "\x1f", "\x1e"
# A git host that accepts the connection and never answers must not hold a thread for ever: every
# command that talks to a remote is killed after this long (Mirrors and Wiki take their own).
REMOTE_TIMEOUT = 60.0
# Never ask for credentials on a terminal, and give up on an HTTP transfer that stalls.
REMOTE_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_HTTP_LOW_SPEED_LIMIT": "1"}


def remote_options(timeout: float) -> dict[str, Any]:
    """The keyword arguments GitPython takes for a command that talks to a remote."""
    env = {**REMOTE_ENV, "GIT_HTTP_LOW_SPEED_TIME": str(max(int(timeout), 1))}
    return {"kill_after_timeout": timeout, "env": env}


class GitError(Exception):
    """Not a repository, an unknown revision, or git itself failing: a message for a person."""


class Repository:
    def __init__(self, path: str | Path) -> None:
        try:
            self.repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(f"{path}: not a git repository (use --repo PATH)") from None
        self._resolved: dict[str, str] = {}

    def resolve(self, rev: str) -> str:
        try:
            return str(self.repo.commit(rev).hexsha)
        except (git.BadName, ValueError, git.GitCommandError):
            raise GitError(
                f"unknown revision {rev!r} (a branch, tag or commit of {self.repo.working_dir})"
            ) from None

    def heads(self) -> dict[str, str]:
        """Every branch of the mirror (origin's, as of the last fetch) and the commit it points at."""
        output = self.repo.git.for_each_ref("--format=%(refname:strip=2) %(objectname)", "refs/heads")
        return dict(line.rsplit(" ", 1) for line in output.splitlines() if " " in line)

    def release_tags(self, rev: str) -> list[str]:
        """Tags matching vX.Y.Z whose commits are reachable from `rev`."""
        output = self.repo.git.tag("--merged", self.resolve(rev), "--list", "v*")
        return [t for t in output.splitlines() if RELEASE_TAG.match(t)]

    def all_release_tags(self) -> list[str]:
        """Every tag matching vX.Y.Z, on any branch (a hotfix's is on its HOT-<n> branch)."""
        output = self.repo.git.tag("--list", "v*")
        return [t for t in output.splitlines() if RELEASE_TAG.match(t)]

    def commits(self, rev: str, since: str | None, merges: bool = True) -> list[Commit]:
        """Commits reachable from `rev` but not from `since`, newest first; merges bring their branches."""
        args = [f"--format=%H{FIELD}%aI{FIELD}%B{RECORD}", self.resolve(rev)]
        if since is not None:
            args.append(f"^{since}")
        if not merges:
            args.append("--no-merges")
        output = self.repo.git.log(*args)
        commits = []
        for record in output.split(RECORD):
            record = record.strip("\n")
            if record:
                sha, _, rest = record.partition(FIELD)
                at, _, message = rest.partition(FIELD)
                commits.append(parse_commit(sha, message, at))
        return commits

    def author_email(self, rev: str) -> str:
        """The email of the commit's author (who wrote the change, not who merged it)."""
        return str(self.repo.git.log("-1", "--format=%ae", self.resolve(rev))).strip()

    def first_parents(self, rev: str, since: str | None) -> list[str]:
        """The commits on `rev`'s first-parent line after `since`, oldest first: what merged into
        a branch, one commit per merge. Without `since`, or when `since` is not on that line any
        more (a force push), just `rev` itself."""
        head = self.resolve(rev)
        if since is None:
            return [head]
        if not self.is_ancestor(since, head):
            return [head]
        output = self.repo.git.rev_list("--first-parent", "--reverse", f"{since}..{head}")
        return [line for line in output.splitlines() if line]

    def is_ancestor(self, ancestor: str, rev: str) -> bool:
        try:
            self.repo.git.merge_base("--is-ancestor", ancestor, rev)
        except git.GitCommandError:
            return False
        return True

    def merges(self, rev: str, since: str) -> list[str]:
        """Merge commits reachable from `rev` but not from `since`."""
        output = self.repo.git.rev_list("--merges", self.resolve(rev), f"^{self.resolve(since)}")
        return [line for line in output.splitlines() if line]

    def branch_name(self, rev: str) -> str:
        """`rev` as a branch name: HEAD becomes the checked-out branch's name."""
        if rev != "HEAD":
            return rev
        try:
            return str(self.repo.active_branch.name)
        except TypeError:  # a detached HEAD (CI checkouts): the caller names the branch
            raise GitError(
                "HEAD is detached: name the branch with --branch (CI: the MR/PR source branch)"
            ) from None

    def branches_containing(self, rev: str, pattern: str) -> list[str]:
        output = self.repo.git.branch(
            "--contains", self.resolve(rev), "--list", pattern, "--format=%(refname:short)"
        )
        return [b for b in output.splitlines() if b]

    def commits_in_range(self, spec: str) -> list[Commit]:
        """`A..B` as git understands it, merge commits left out (they carry no change of their own)."""
        if ".." in spec:
            start, end = spec.split("..", 1)
            return self.commits(end or "HEAD", self.resolve(start) if start else None, merges=False)
        return self.commits(spec, None, merges=False)


class Mirrors:
    """Bare clones of Release sources, kept under one directory and fetched before each use.

    Kopf runs handlers in threads: two Releases of one repository would otherwise fetch into the
    same mirror at once and trip over git's ref locks, so each mirror is used by one thread at a time.
    """

    def __init__(self, root: str | Path, timeout: float = REMOTE_TIMEOUT) -> None:
        self.root = Path(root)
        self.timeout = timeout
        self._locks: dict[Path, threading.RLock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def lock(self, url: str) -> Iterator[None]:
        """This mirror, for this thread alone; waited for at most one timeout (behind a fetch that
        hangs, the next user gives up rather than queueing for ever)."""
        with self._guard:
            lock = self._locks.setdefault(self._path(url), threading.RLock())
        if not lock.acquire(timeout=self.timeout):
            raise GitError(f"{url}: another look at this repository has not finished in {self.timeout:g}s")
        try:
            yield
        finally:
            lock.release()

    def _path(self, url: str) -> Path:
        return self.root / hashlib.sha256(url.encode()).hexdigest()[:16]

    def open(self, url: str, credentials: tuple[str, str] | None = None) -> Repository:
        with self.lock(url):
            return self._open(url, credentials)

    def _open(self, url: str, credentials: tuple[str, str] | None) -> Repository:
        path = self._path(url)
        remote = with_credentials(url, credentials)
        try:
            if not path.exists():
                self._create(path)
            repo = git.Repo(path)
            if "origin" in (r.name for r in repo.remotes):
                repo.git.remote("set-url", "origin", remote)
            else:
                repo.git.remote("add", "origin", remote)
            repo.git.fetch(
                "--quiet",
                "--prune",
                "origin",
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                **remote_options(self.timeout),
            )
        except git.GitCommandError as error:
            raise GitError(f"cannot fetch {url}: {_stderr(error, self.timeout)}") from None
        return Repository(path)

    @staticmethod
    def _create(path: Path) -> None:
        """An empty bare mirror, which the fetch then fills. Not `git clone`: GitPython runs a clone
        as a process it cannot time out, and a fetch killed half-way leaves a mirror the next
        fetch simply completes. Made beside its place and moved in, so it is whole or absent."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{path.name}-", dir=path.parent))
        try:
            git.Repo.init(partial, bare=True)
            partial.rename(path)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def push_tag(self, repository: Repository, tag: str, revision: str, message: str) -> None:
        """Create an annotated tag and push it; if origin refuses, leave no local tag behind."""
        repo = repository.repo
        try:
            with repo.git.custom_environment(
                GIT_COMMITTER_NAME="Gantry", GIT_COMMITTER_EMAIL="gantry@localhost"
            ):
                repo.git.tag("-a", tag, revision, "-m", message)
            repo.git.push("origin", f"refs/tags/{tag}", **remote_options(self.timeout))
        except git.GitCommandError as error:
            repo.git.tag("-d", tag, with_exceptions=False)
            raise GitError(f"tag {tag}: {_stderr(error, self.timeout)}") from None

    @staticmethod
    def tag_commit(repository: Repository, tag: str) -> str | None:
        try:
            return str(repository.repo.git.rev_parse("--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"))
        except git.GitCommandError:
            return None


def with_credentials(url: str, credentials: tuple[str, str] | None) -> str:
    if credentials is None or not url.startswith("https://"):
        return url
    user, secret = (quote(part, safe="") for part in credentials)
    return f"https://{user}:{secret}@{url.removeprefix('https://')}"


def _stderr(error: git.GitCommandError, timeout: float | None = None) -> str:
    text = str(error.stderr or error).strip().replace("stderr: ", "").strip("'")
    if timeout is not None and "did not complete in" in text:  # GitPython's kill_after_timeout
        return f"no answer in {timeout:g}s (the git host accepted the connection, then went silent)"
    return " ".join(text.split())[:300]
