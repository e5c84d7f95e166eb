"""`gantry version next`, `gantry commits check` and `gantry branch check`: the domain rules over a
real repository."""

from __future__ import annotations

from dataclasses import dataclass

from gantry.adapters.git import Repository
from gantry.domain.versions import (
    Bump,
    Commit,
    branch_violations,
    explain,
    latest,
    next_version,
    seed_violation,
)


@dataclass(frozen=True)
class NextVersion:
    tag: str | None  # None: nothing since the last release warrants one
    base: str | None  # the release tag it counts from
    bump: Bump
    commits: list[Commit]

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
) -> NextVersion:
    """`skip` leaves one tag out, to see a tagged commit's release as it was when it was made."""
    base = latest(t for t in repo.release_tags(rev) if t != skip)
    base_tag = f"v{base}" if base is not None else None
    commits = repo.commits(rev, base_tag)
    version, bump = next_version(base, commits, major_on_zero, patch_only)
    return NextVersion(f"v{version}" if version is not None else None, base_tag, bump, commits)


def check_commits(repo: Repository, spec: str) -> list[tuple[Commit, str]]:
    """Each commit breaking the seed's `type(TICKET): description` rule, with why."""
    found = []
    for commit in repo.commits_in_range(spec):
        why = seed_violation(commit)
        if why is not None:
            found.append((commit, why))
    return found


def check_branch(repo: Repository, branch: str, main: str = "main", name: str | None = None) -> list[str]:
    """The seed's rules for a ticket branch before it may merge (see domain.versions). `name`:
    the branch's name when `branch` is a commit (CI checks out a detached HEAD)."""
    head, base = repo.resolve(branch), repo.resolve(main)
    name = name or repo.branch_name(branch)
    rebased = repo.is_ancestor(base, head)
    commits = repo.commits(head, base, merges=False)
    merges = repo.merges(head, base)
    return branch_violations(name, rebased, main, reversed(commits), merges)
