"""Executors for the effects carried out in git: release tags pushed to origin, and the seed's
paperwork (HOT-<n> branch, HOT-<n> / ROLLBACK-<n> retrospective pages in a git-backed wiki)."""

from __future__ import annotations

import base64
import logging
from typing import Any, Protocol

from gantry.adapters import wiki
from gantry.adapters.effects import Context, EffectFailed, Executor
from gantry.adapters.git import GitError, Repository
from gantry.adapters.merge_requests import MergeRequestError, open_request
from gantry.domain.flow.gitops import by_container
from gantry.domain.flow.model import CreateTag, Failure, Retrospective, SetImages
from gantry.domain.inputs.pipeline import Pipeline
from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason
from gantry.domain.vocabulary.timefmt import to_rfc3339

log = logging.getLogger(__name__)


class SecretReader(Protocol):
    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None: ...


def git_credentials(
    secrets: SecretReader, namespace: str, pipeline: Pipeline | Problem
) -> tuple[str, str] | None:
    """HTTPS credentials from the Secret the Pipeline names (keys: username, password or token)."""
    if isinstance(pipeline, Problem) or not pipeline.git.credentials_secret:
        return None
    data = secrets.read_secret(namespace, pipeline.git.credentials_secret) or {}
    decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
    secret = decoded.get("password") or decoded.get("token")
    return (decoded.get("username", "git"), secret) if secret else None


def create_tag(ctx: Context, effect: CreateTag) -> None:
    """Push the annotated release tag, unless it is there already; a tag is never moved."""
    mirrors, repository = ctx.adapters.mirrors, ctx.release.repository
    if mirrors is None or not repository:
        # Another replica (with a git cache) settled the version; this one cannot push the tag.
        raise EffectFailed(
            Failure.UNAVAILABLE,
            f"cannot push tag {effect.tag}: this operator runs without a git cache (set GANTRY_GIT_CACHE)",
        )
    try:
        with mirrors.lock(repository):
            repo: Repository = mirrors.open(
                repository, git_credentials(ctx.adapters.resources, ctx.namespace, ctx.pipeline)
            )
            existing = mirrors.tag_commit(repo, effect.tag)
            if existing is None:
                mirrors.push_tag(repo, effect.tag, effect.revision, effect.message)
                ctx.announce(
                    "Normal",
                    Reason.TAGGED,
                    f"tagged {effect.revision[:12]} as {effect.tag} and pushed it to {repository}",
                )
            elif existing != effect.revision:
                raise EffectFailed(
                    Failure.CONFLICT,
                    f"tag {effect.tag} appeared on {existing[:12]} meanwhile; tags are never moved",
                )
    except GitError as error:
        raise EffectFailed(Failure.REFUSED, str(error)) from error


def commit_images(ctx: Context, effect: SetImages) -> None:
    """A stage deploying through git: commit the digests to its file and push (nothing when the
    file already says so); the GitOps tool applies the commit and the rollout is observed."""
    target, targets = effect.git, ctx.adapters.git_targets
    assert target is not None
    if targets is None:
        raise EffectFailed(
            Failure.UNAVAILABLE,
            f"stage deploys through {target.describe()}, but this operator runs without a git cache "
            "(set GANTRY_GIT_CACHE)",
        )
    credentials = git_credentials(ctx.adapters.resources, ctx.namespace, ctx.pipeline)
    try:
        images = by_container(effect.images)
        proposal = effect.proposal
        if effect.restore and proposal:
            targets.drop_branch(target, proposal, credentials)  # a proposal never merged later
            proposal = None
        undoing = (ctx.release.key, effect.stage) if effect.restore else None
        commit = targets.write(target, images, effect.commit, credentials, effect.snapshot, proposal, undoing)
    except GitError as error:
        raise EffectFailed(Failure.UNAVAILABLE, str(error)) from error
    if commit is not None and proposal and target.merge_request is not None:
        open_merge_request(ctx, effect, proposal)
    if commit is not None:
        title = effect.commit.splitlines()[0] if effect.commit else ""
        where = (
            f"branch {proposal} of {target.repository}, proposed for {target.branch}"
            if proposal
            else target.describe()
        )
        ctx.announce("Normal", Reason.COMMITTED, f"committed {commit[:12]} to {where}: {title}")


def open_merge_request(ctx: Context, effect: SetImages, branch: str) -> None:
    """The proposal's merge request (pull request), when the stage asks for one. The branch is
    pushed already: a host that refuses is a Warning Event, and the stage waits for the merge."""
    target = effect.git
    assert target is not None and target.merge_request is not None
    api = target.merge_request
    data = ctx.adapters.resources.read_secret(ctx.namespace, api.token_secret) or {}
    token = base64.b64decode(data.get("token", "")).decode() if data.get("token") else ""
    title, _, body = effect.commit.partition("\n")
    try:
        if not token:
            raise MergeRequestError(f"Secret {ctx.namespace}/{api.token_secret} has no key token")
        url = open_request(api, token, branch, target.branch, title, body.strip())
    except MergeRequestError as error:
        ctx.announce(
            "Warning", Reason.MERGE_REQUEST_FAILED, f"could not open the merge request for {branch}: {error}"
        )
        return
    ctx.announce(
        "Normal",
        Reason.MERGE_REQUEST_OPENED,
        f"merge request for {branch} into {target.branch}: {url or 'open'}",
    )


def ledger_to_git(ctx: Context, line: tuple[str, str]) -> None:
    """Append a ledger line (and its marker) to the Pipeline's ledger in git, when it has one. The
    record in the cluster is written already: a git failure here is a Warning Event, never a stop."""
    pipeline, targets = ctx.pipeline, ctx.adapters.git_targets
    if isinstance(pipeline, Problem) or pipeline.git.ledger is None or targets is None:
        return
    credentials = git_credentials(ctx.adapters.resources, ctx.namespace, pipeline)
    try:
        targets.append_line(pipeline.git.ledger, *line, credentials)
    except GitError as error:
        ctx.announce(
            "Warning", Reason.LEDGER_NOT_IN_GIT, f"the production ledger's line is not in git: {error}"
        )


def write_paperwork(ctx: Context, effect: Retrospective) -> None:
    """Paperwork must never stop a rollback or an emergency: a git failure is an Event, not a stop."""
    try:
        paperwork(ctx, effect)
    except GitError as error:
        log.warning("Release %s: %s paperwork failed: %s", ctx.release.key, effect.kind, error)
        ctx.announce("Warning", Reason.PAPERWORK_FAILED, f"{effect.kind}: {error}")


def paperwork(ctx: Context, effect: Retrospective) -> None:
    """The seed's HOT-<n> branch and HOT-<n> / ROLLBACK-<n> pages; one ticket per Release and kind."""
    release, pipeline, mirrors = ctx.release, ctx.pipeline, ctx.adapters.mirrors
    if mirrors is None or isinstance(pipeline, Problem):
        log.info(
            "Release %s: %s retrospective due (no git configured): %s",
            release.key,
            effect.kind,
            effect.reason,
        )
        return
    ticket, decided_at = allocate_ticket(ctx, effect.kind)
    credentials = git_credentials(ctx.adapters.resources, ctx.namespace, pipeline)
    revision = None
    if release.repository:
        with mirrors.lock(release.repository):
            repo = mirrors.open(release.repository, credentials)
            revision = repo.resolve(release.revision or "HEAD")
            if effect.kind == "Emergency":
                wiki.push_branch(repo.repo, ticket, revision, mirrors.timeout)
    if pipeline.git.wiki_repository:
        paper = wiki.Paperwork(
            effect.kind,
            ticket,
            release.application,
            release.key,
            release.version,
            revision,
            effect.decided_by,
            effect.reason,
            decided_at,
            list(release.status.get("changelog") or []),
        )
        page = wiki.render_page(paper, pipeline.git.page_template or wiki.DEFAULT_TEMPLATE)
        wiki.Wiki(mirrors.root, lambda: credentials, mirrors.timeout).write(
            pipeline.git.wiki_repository,
            ticket,
            page,
            f"{ticket}: {effect.kind} of {release.key} ({release.version})",
        )
    ctx.announce("Warning", Reason.RETROSPECTIVE, f"{ticket}: {effect.kind} paperwork in git")


def allocate_ticket(ctx: Context, kind: str) -> tuple[str, str]:
    """The ticket (HOT-<n> / ROLLBACK-<n>) and when it was allocated: once per Release and kind, in
    the Pipeline's status, so a retry writes the very same page."""
    release, now = ctx.release, to_rfc3339(ctx.now)
    tickets: list[dict[str, Any]] = []

    def allocate(status: dict[str, Any]) -> dict[str, Any]:
        tickets[:] = wiki.allocate(list(status.get("tickets") or []), kind, release.uid, release.key, now)
        return {"tickets": tickets}

    ctx.adapters.resources.update_ledger(release.namespace, release.pipeline, allocate)
    mine = next(t for t in tickets if t["kind"] == kind and t["uid"] == release.uid)
    return str(mine["id"]), str(mine["at"])


EXECUTORS: dict[type[Any], Executor] = {CreateTag: create_tag, Retrospective: write_paperwork}
