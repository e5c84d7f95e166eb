"""A stage's place in git (spec.stages[].git): where the digests are written and how, the
production branch it may take from an earlier stage, proposals and their merge requests, and the
GitOps tool's object that says what it applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gantry.domain.vocabulary.problems import Problem
from gantry.domain.vocabulary.reasons import Reason

DEFAULT_PROPOSAL_TIMEOUT = 86400  # a day for someone to review and merge
GIT_FORMATS = ("Kustomize", "HelmValues", "Yaml")
GIT_ROLLBACKS = ("Commit", "LiveFirst")


@dataclass(frozen=True)
class GitImage:
    """Where one container's image is written in a git target: a kustomization's `images:` entry
    (by the image name the manifests use), or a dotted key path in a YAML file."""

    container: str
    name: str | None = None  # Kustomize: the image name in the manifests (default: its repository)
    key: str | None = None  # HelmValues / Yaml: e.g. web.image, or spec.containers[name=web].image

    def to_spec(self) -> dict[str, Any]:
        return {
            "container": self.container,
            **({"name": self.name} if self.name else {}),
            **({"key": self.key} if self.key else {}),
        }


SYNC_KINDS = {
    "Application": ("argoproj.io", "v1alpha1", "applications"),  # Argo CD
    "Kustomization": ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),  # Flux
}
SYNC_NAMESPACES = {"Application": "argocd", "Kustomization": "flux-system"}  # where each tool keeps them


@dataclass(frozen=True)
class GitSync:
    """The object in which the GitOps tool says what it applied."""

    kind: str  # Application (Argo CD) or Kustomization (Flux)
    namespace: str
    name: str

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


MERGE_REQUEST_APIS = ("GitLab", "GitHub")


@dataclass(frozen=True)
class MergeRequestApi:
    """Where a proposal's merge request (GitLab) or pull request (GitHub) is opened."""

    api: str  # GitLab or GitHub
    url: str  # the API's base: https://gitlab.example.com/api/v4, https://api.github.com
    project: str  # group/project (GitLab) or owner/repository (GitHub)
    token_secret: str  # a Secret (the Pipeline's namespace) with the API token under `token`

    def to_spec(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "url": self.url,
            "project": self.project,
            "tokenSecretRef": {"name": self.token_secret},
        }


@dataclass(frozen=True)
class GitTarget:
    """A stage that deploys by committing digests to git; a GitOps tool (Argo CD, Flux) applies
    them, and Gantry observes the rollout on the cluster as for a live stage."""

    repository: str
    branch: str
    path: str  # Kustomize: the directory holding kustomization.yaml; HelmValues / Yaml: the file
    format: str = "Kustomize"
    images: tuple[GitImage, ...] = ()
    rollback: str = "Commit"  # LiveFirst: re-pin the live workloads at once, then commit
    # The seed's production branch: take the path as the named earlier stage committed it, tagged,
    # merged into this branch (never written anew); `source` is that stage's target, resolved.
    promote_from: str | None = None
    source: GitTarget | None = None
    # Proposal mode: push a branch and wait, at most this long, until it is merged into `branch`.
    proposal_seconds: int | None = None
    sync: GitSync | None = None  # the GitOps tool's object to read: has it applied the commit?
    merge_request: MergeRequestApi | None = None  # proposal mode: open one for the branch, too

    @property
    def file(self) -> str:
        """The one file Gantry writes (a commit never touches another)."""
        return f"{self.path.rstrip('/')}/kustomization.yaml" if self.format == "Kustomize" else self.path

    def image(self, container: str) -> GitImage | None:
        return next((i for i in self.images if i.container == container), None)

    def describe(self) -> str:
        return f"{self.file} on {self.branch} of {self.repository}"

    def _proposal_spec(self) -> dict[str, Any]:
        opened = {"mergeRequest": self.merge_request.to_spec()} if self.merge_request else {}
        return {"timeoutSeconds": self.proposal_seconds, **opened}

    def to_spec(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "branch": self.branch,
            "path": self.path,
            "format": self.format,
            "rollback": self.rollback,
            **({"images": [i.to_spec() for i in self.images]} if self.images else {}),
            **({"promoteFrom": self.promote_from} if self.promote_from else {}),
            **({"source": self.source.to_spec()} if self.source is not None else {}),
            **({"proposal": self._proposal_spec()} if self.proposal_seconds else {}),
            **({"sync": self.sync.to_spec()} if self.sync is not None else {}),
        }


def parse_git_target(where: str, raw: Any) -> GitTarget | Problem | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw.get("repository") or not raw.get("branch"):
        return Problem(
            Reason.INVALID_PIPELINE,
            where,
            "a git target names the repository and the branch the GitOps tool applies",
            "set git.repository and git.branch",
        )
    path = str(raw.get("path") or "")
    if not safe_path(path):
        return Problem(
            Reason.INVALID_PIPELINE,
            f"{where}.path",
            f"{path!r} is not a relative path inside the repository",
            "use a path like overlays/staging (no leading /, no ..)",
        )
    fmt, rollback = str(raw.get("format") or "Kustomize"), str(raw.get("rollback") or "Commit")
    for field_name, value, allowed in (("format", fmt, GIT_FORMATS), ("rollback", rollback, GIT_ROLLBACKS)):
        if value not in allowed:
            return Problem(
                Reason.INVALID_PIPELINE,
                f"{where}.{field_name}",
                f"unknown {field_name} {value!r}",
                f"use one of {', '.join(allowed)}",
            )
    images = tuple(
        GitImage(str(i["container"]), i.get("name") or None, i.get("key") or None)
        for i in raw.get("images") or ()
    )
    source = parse_git_target(f"{where}.source", raw.get("source"))  # pinned in a Release's status
    if isinstance(source, Problem):
        return source
    promote_from = str(raw["promoteFrom"]) if raw.get("promoteFrom") else None
    raw_sync = raw.get("sync")
    sync = None
    if raw_sync:
        if raw_sync.get("kind") not in SYNC_KINDS or not raw_sync.get("name"):
            return Problem(
                Reason.INVALID_PIPELINE,
                f"{where}.sync",
                f"cannot read {raw_sync.get('kind')!r} {raw_sync.get('name')!r}",
                "name an Argo CD Application or a Flux Kustomization: {kind, namespace, name}",
            )
        kind = str(raw_sync["kind"])
        sync = GitSync(kind, str(raw_sync.get("namespace") or SYNC_NAMESPACES[kind]), str(raw_sync["name"]))
    proposal = raw.get("proposal")
    seconds = (
        int((proposal or {}).get("timeoutSeconds") or DEFAULT_PROPOSAL_TIMEOUT)
        if proposal is not None
        else None
    )
    merge_request = _parse_merge_request(
        f"{where}.proposal.mergeRequest", (proposal or {}).get("mergeRequest")
    )
    if isinstance(merge_request, Problem):
        return merge_request
    return GitTarget(
        str(raw["repository"]),
        str(raw["branch"]),
        path,
        fmt,
        images,
        rollback,
        promote_from,
        source,
        seconds,
        sync,
        merge_request,
    )


def _parse_merge_request(where: str, raw: Any) -> MergeRequestApi | Problem | None:
    if not raw:
        return None
    secret = (raw.get("tokenSecretRef") or {}).get("name")
    if raw.get("api") not in MERGE_REQUEST_APIS or not raw.get("url") or not raw.get("project") or not secret:
        return Problem(
            Reason.INVALID_PIPELINE,
            where,
            "a merge request needs its api (GitLab or GitHub), url, project and tokenSecretRef",
            "e.g. {api: GitLab, url: https://gitlab.example.com/api/v4, project: team/deploy, "
            "tokenSecretRef: {name: gitlab-token}}",
        )
    return MergeRequestApi(str(raw["api"]), str(raw["url"]).rstrip("/"), str(raw["project"]), str(secret))


def safe_path(path: str) -> bool:
    """A path inside the repository: relative, without `..`, so a commit stays where it is told."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and ".." not in parts and "" not in parts[:-1]
