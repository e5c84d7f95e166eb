"""`gantry version next`, `gantry commits check` and `gantry branch check`: the domain rules over a
real repository."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import semver

from gantry.adapters.git import GitError, Repository
from gantry.domain.inputs.versions import (
    Bump,
    Commit,
    Reservation,
    branch_violations,
    explain,
    first_free,
    latest,
    next_version,
    parse_tag,
    seed_violation,
)


@dataclass(frozen=True)
class NextVersion:
    tag: str | None  # None: nothing since the last release warrants one
    base: str | None  # the release tag it counts from
    bump: Bump
    commits: list[Commit]
    after: Reservation | None = None  # an older Release in flight it counts from instead of a tag

    def explanation(self) -> str:
        lines = [
            f"since {self.base or 'the first commit (base v0.0.0)'}: {len(self.commits)} commit(s), "
            f"bump: {self.bump.name.lower()}"
        ]
        for group, commits in explain(self.commits).items():
            lines.append(f"{group}:")
            lines += [f"  {c.sha[:10]} {c.scope or '-'}: {c.description}" for c in commits]
        return "\n".join(lines)


def next_release(
    repo: Repository,
    rev: str = "HEAD",
    major_on_zero: bool = False,
    patch_only: bool = False,
    skip: str | None = None,
    reserved: Sequence[Reservation] = (),
) -> NextVersion:
    """The version `rev` releases as: from the commits since the last release tag it contains, or
    since the newest older Release still in flight on its line (`reserved`: versions other
    Releases carry, not tagged yet), bumped past any version that exists (a tag on any branch) or
    is reserved, so no two Releases ever carry the same one. `skip` leaves one tag out, to see a
    tagged commit's release as it was when it was made."""
    base = latest(t for t in repo.release_tags(rev) if t != skip)
    base_tag = f"v{base}" if base is not None else None
    after = None if patch_only else in_flight_before(repo, rev, base, reserved)
    since = after.revision if after is not None else base_tag
    commits = repo.commits(rev, since)
    start = parse_tag(after.version) if after is not None else base
    version, bump = next_version(start, commits, major_on_zero, patch_only)
    if version is not None and skip is None:
        taken = [v for v in map(parse_tag, [*repo.all_release_tags(), *(r.version for r in reserved)]) if v]
        version = first_free(version, bump, taken)
    return NextVersion(f"v{version}" if version is not None else None, base_tag, bump, commits, after)


def unsettled_before(repo: Repository, rev: str, reserved: Sequence[Reservation]) -> Reservation | None:
    """A Release of an older commit on `rev`'s line whose version is not settled yet: versions
    are given in commit order, so `rev` waits for it (two Releases made at once never both count
    from the same tag)."""
    head = repo.resolve(rev)
    for r in reserved:
        if r.version:
            continue
        try:
            older = repo.resolve(r.revision)
        except GitError:
            continue  # its revision is unknown here: it cannot be on our line
        if older != head and repo.is_ancestor(older, head):
            return r
    return None


def in_flight_before(
    repo: Repository, rev: str, base: semver.Version | None, reserved: Sequence[Reservation]
) -> Reservation | None:
    """The newest Release in flight whose commit `rev` contains, when it is newer than the tag."""
    head = repo.resolve(rev)
    older = [
        r
        for r in reserved
        if r.version
        and (v := parse_tag(r.version)) is not None
        and (base is None or v > base)
        and r.revision != head
        and repo.is_ancestor(r.revision, head)
    ]
    return max(older, key=lambda r: parse_tag(r.version) or semver.Version(0, 0, 0), default=None)


def check_commits(repo: Repository, spec: str) -> list[tuple[Commit, str]]:
    """Each commit breaking the seed's `type(TICKET): description` rule, with why."""
    found = []
    for commit in repo.commits_in_range(spec):
        why = seed_violation(commit)
        if why is not None:
            found.append((commit, why))
    return found


def check_branch(repo: Repository, branch: str, main: str = "main", name: str | None = None) -> list[str]:
    """The seed's rules for a ticket branch before it may merge (see domain.inputs.versions). `name`:
    the branch's name when `branch` is a commit (CI checks out a detached HEAD)."""
    head, base = repo.resolve(branch), repo.resolve(main)
    name = name or repo.branch_name(branch)
    rebased = repo.is_ancestor(base, head)
    commits = repo.commits(head, base, merges=False)
    merges = repo.merges(head, base)
    return branch_violations(name, rebased, main, reversed(commits), merges)
