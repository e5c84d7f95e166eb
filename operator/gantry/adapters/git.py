"""Git through GitPython: release tags reachable from a revision, and the commits since one.

One `git log` / `git tag --merged` each, whatever the history's length: the version benchmark
runs this over 20,000 commits.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from urllib.parse import quote

import git
from gantry.domain.versions import RELEASE_TAG, Commit, parse_commit

FIELD, RECORD = "\x1f", "\x1e"


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

    def release_tags(self, rev: str) -> list[str]:
        """Tags matching vX.Y.Z whose commits are reachable from `rev`."""
        output = self.repo.git.tag("--merged", self.resolve(rev), "--list", "v*")
        return [t for t in output.splitlines() if RELEASE_TAG.match(t)]

    def commits(self, rev: str, since: str | None, merges: bool = True) -> list[Commit]:
        """Commits reachable from `rev` but not from `since`, newest first; merges bring their branches."""
        args = [f"--format=%H{FIELD}%B{RECORD}", self.resolve(rev)]
        if since is not None:
            args.append(f"^{since}")
        if not merges:
            args.append("--no-merges")
        output = self.repo.git.log(*args)
        commits = []
        for record in output.split(RECORD):
            record = record.strip("\n")
            if record:
                sha, _, message = record.partition(FIELD)
                commits.append(parse_commit(sha, message))
        return commits

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

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._locks: dict[Path, threading.RLock] = {}
        self._guard = threading.Lock()

    def lock(self, url: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(self._path(url), threading.RLock())

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
                git.Repo.clone_from(remote, path, bare=True)
            repo = git.Repo(path)
            repo.git.remote("set-url", "origin", remote)
            repo.git.fetch(
                "--quiet", "--prune", "origin", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"
            )
        except git.GitCommandError as error:
            raise GitError(f"cannot fetch {url}: {_stderr(error)}") from None
        return Repository(path)

    @staticmethod
    def push_tag(repository: Repository, tag: str, revision: str, message: str) -> None:
        """Create an annotated tag and push it; if origin refuses, leave no local tag behind."""
        repo = repository.repo
        try:
            with repo.git.custom_environment(
                GIT_COMMITTER_NAME="Gantry", GIT_COMMITTER_EMAIL="gantry@localhost"
            ):
                repo.git.tag("-a", tag, revision, "-m", message)
            repo.git.push("origin", f"refs/tags/{tag}")
        except git.GitCommandError as error:
            repo.git.tag("-d", tag, with_exceptions=False)
            raise GitError(f"tag {tag}: {_stderr(error)}") from None

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


def _stderr(error: git.GitCommandError) -> str:
    text = str(error.stderr or error).strip().replace("stderr: ", "").strip("'")
    return " ".join(text.split())[:300]
