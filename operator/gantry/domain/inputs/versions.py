"""The next release version from Conventional Commits (Angular types), as the seed's flow tags it.

`feat` → minor, `fix`/`perf` → patch, `!` or a `BREAKING CHANGE:` / `BREAKING-CHANGE:` footer →
major (minor while the major version is 0, unless asked otherwise); other types alone make no
release. Release tags are exactly `vMAJOR.MINOR.PATCH`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import semver

RELEASE_TAG = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
HEADER = re.compile(r"^(?P<type>[a-zA-Z]+)(?:\((?P<scope>[^()\r\n]*)\))?(?P<bang>!)?: (?P<description>\S.*)$")
BREAKING_FOOTER = re.compile(r"^BREAKING[ -]CHANGE: ", re.MULTILINE)
# The seed's rule for every commit on main: type(TICKET-IDENTIFIER): description
SEED_HEADER = re.compile(r"^[a-z]+\([A-Z][A-Z0-9]*-\d+\)!?: \S.*$")
TYPES = ("feat", "fix", "perf", "docs", "chore", "test", "ci", "refactor", "style", "build", "revert")


class Bump(IntEnum):
    NONE = 0
    PATCH = 1
    MINOR = 2
    MAJOR = 3


@dataclass(frozen=True)
class Commit:
    sha: str
    type: str | None  # None: not a conventional commit
    scope: str | None
    breaking: bool
    description: str
    header: str
    at: str = ""  # when it was written (the author date, ISO 8601); "" when not read

    @property
    def bump(self) -> Bump:
        if self.type is None:
            return Bump.NONE
        if self.breaking:
            return Bump.MAJOR
        return {"feat": Bump.MINOR, "fix": Bump.PATCH, "perf": Bump.PATCH}.get(self.type, Bump.NONE)


def parse_commit(sha: str, message: str, at: str = "") -> Commit:
    header = message.strip().splitlines()[0] if message.strip() else ""
    match = HEADER.match(header)
    if match is None:
        return Commit(sha, None, None, False, header, header, at)
    breaking = bool(match["bang"]) or bool(BREAKING_FOOTER.search(message))
    return Commit(sha, match["type"].lower(), match["scope"], breaking, match["description"], header, at)


def parse_tag(tag: str) -> semver.Version | None:
    return semver.Version.parse(tag[1:]) if RELEASE_TAG.match(tag) else None


def latest(tags: Iterable[str]) -> semver.Version | None:
    """The highest release tag (by semver, not by date); other tags are ignored."""
    versions = [v for v in map(parse_tag, tags) if v is not None]
    return max(versions) if versions else None


def next_version(
    base: semver.Version | None,
    commits: Iterable[Commit],
    major_on_zero: bool = False,
    patch_only: bool = False,
) -> tuple[semver.Version | None, Bump]:
    """The version after `base` (v0.0.0 when there is none), or None when nothing warrants a release.

    `patch_only` is for hotfixes: whatever they contain, they patch the version production runs.
    """
    bump = max((c.bump for c in commits), default=Bump.NONE)
    current = base or semver.Version(0, 0, 0)
    if bump == Bump.NONE:
        return None, bump
    if patch_only:
        return current.bump_patch(), Bump.PATCH
    if bump == Bump.MAJOR and current.major == 0 and not major_on_zero:
        bump = Bump.MINOR
    return bumped(current, bump), bump


@dataclass(frozen=True)
class Reservation:
    """A version another Release of the application carries in flight, not tagged yet: taken."""

    release: str  # its name
    version: str  # empty: not settled yet (a Release of an older commit settles first)
    revision: str  # the commit it will be tagged on (spec.source.revision until settled)


def bumped(current: semver.Version, bump: Bump) -> semver.Version:
    if bump == Bump.MAJOR:
        return current.bump_major()
    if bump == Bump.MINOR:
        return current.bump_minor()
    return current.bump_patch()


def first_free(version: semver.Version, bump: Bump, taken: Iterable[semver.Version]) -> semver.Version:
    """The version, bumped again the same way while it exists (a tag on any branch) or another
    Release in flight carries it: after a hotfix tagged v1.4.1 on its HOT-<n> branch, main's next
    fix is v1.4.2; a hotfix patches to the first patch nobody has taken. Tags never move."""
    used = set(taken)
    while version in used:
        version = bumped(version, bump)
    return version


def seed_violation(commit: Commit) -> str | None:
    """Why a commit's header breaks the seed's `type(TICKET): description` rule, or None."""
    if SEED_HEADER.match(commit.header) and commit.type in TYPES:
        return None
    if commit.type is None:
        return "not a conventional commit header"
    if commit.type not in TYPES:
        return f"unknown type {commit.type!r} (use one of {', '.join(TYPES)})"
    return "the scope must be the ticket identifier, e.g. feat(JIRA-1234): ..."


def explain(commits: Iterable[Commit]) -> dict[str, list[Commit]]:
    """Release-worthy commits grouped for --explain and changelogs: breaking first."""
    groups: dict[str, list[Commit]] = {}
    for commit in commits:
        if commit.bump == Bump.NONE and commit.type is not None:
            key = "other"
        elif commit.type is None:
            continue
        elif commit.breaking:
            key = "breaking"
        else:
            key = commit.type
        groups.setdefault(key, []).append(commit)
    order = ["breaking", "feat", "fix", "perf", "other"]
    return {k: groups[k] for k in order if k in groups}


CHANGELOG_LIMIT = 50


def changelog(commits: Iterable[Commit], limit: int = CHANGELOG_LIMIT) -> list[dict[str, str]]:
    """The release-worthy commits as plain data for a Release's status (bounded), breaking first."""
    entries = []
    for group, grouped in explain(commits).items():
        if group == "other":
            continue
        entries += [
            {"type": group, "scope": c.scope or "", "description": c.description, "commit": c.sha[:12]}
            | ({"committedAt": c.at} if c.at else {})
            for c in grouped
        ]
    return entries[:limit]


# The seed's branch for a ticket: uid/TICKET-IDENTIFIER, e.g. nyefan/JIRA-1234.
BRANCH_NAME = re.compile(r"^(?P<uid>[a-z0-9][a-z0-9._-]*)/(?P<ticket>[A-Z][A-Z0-9]*-\d+)$")


def branch_violations(
    name: str, rebased: bool, main: str, commits: Iterable[Commit], merges: Iterable[str]
) -> list[str]:
    """Why a branch is not ready to merge by the seed's rules (uid/TICKET, rebased onto main,
    every commit `type(TICKET): ...` with the branch's own ticket, history rebuilt without merges)."""
    found = []
    match = BRANCH_NAME.match(name)
    if match is None:
        found.append(f"branch {name!r}: name it uid/TICKET-IDENTIFIER, e.g. nyefan/JIRA-1234")
    if not rebased:
        found.append(f"branch {name!r} is not rebased onto {main}: git rebase {main}")
    for sha in merges:
        found.append(
            f"{sha[:10]} is a merge commit: rebuild the history by rebasing (no merges on the branch)"
        )
    ticket = match["ticket"] if match else None
    for commit in commits:
        why = seed_violation(commit)
        if why is None and ticket is not None and commit.scope != ticket:
            why = f"its scope is {commit.scope!r}, not the branch's ticket {ticket!r}"
        if why is not None:
            found.append(f"{commit.sha[:10]} {commit.header!r}: {why}")
    return found
