"""A stage's place in git: write digests into one file on one branch, commit, push.

ruamel.yaml edits the file in place (comments, key order and quoting survive), so a commit's diff
shows the digests and nothing else. One working clone per (repository, branch), used by one thread
at a time; a push refused because the branch moved is redone on the new head. A commit touches the
configured file only, and writing what is there already commits nothing (a retried tick, or an
operator killed after its push, repeats nothing).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.util import load_yaml_guess_indent

import git
from gantry.adapters.git import REMOTE_TIMEOUT, GitError, remote_options, with_credentials
from gantry.domain.flow.gitops import RELEASE_TRAILER, STAGE_TRAILER
from gantry.domain.flow.model import GitSnapshot
from gantry.domain.inputs.git_target import GitTarget

PUSH_ATTEMPTS = 3
AUTHOR = {
    "GIT_AUTHOR_NAME": "Gantry",
    "GIT_AUTHOR_EMAIL": "gantry@localhost",
    "GIT_COMMITTER_NAME": "Gantry",
    "GIT_COMMITTER_EMAIL": "gantry@localhost",
}


class GitTargets:
    def __init__(self, root: str | Path, timeout: float = REMOTE_TIMEOUT) -> None:
        self.root = Path(root) / "targets"
        self.timeout = timeout
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def write(
        self,
        target: GitTarget,
        images: Iterable[tuple[str, str]],
        message: str,
        credentials: tuple[str, str] | None = None,
        snapshot: GitSnapshot | None = None,
        proposal: str | None = None,
        undoing: tuple[str, str] | None = None,
    ) -> str | None:
        """Commit `images` (container, image) into the target's file and push; the new commit, or
        None when the file already said so. With a `snapshot` (a production branch), the path is
        taken whole from the snapshot's tag instead, made first when deploying. With a `proposal`,
        the commit goes to that branch (forced: one proposal per Release and stage) for a person
        to merge. `undoing` (release, stage): a rollback, which commits only where that Release's
        stage committed (a proposal never merged, or a push that never happened, left nothing to
        undo)."""
        with self._clone(target) as path:
            return self._write(path, target, list(images), message, credentials, snapshot, proposal, undoing)

    @contextlib.contextmanager
    def _clone(self, target: GitTarget) -> Iterator[Path]:
        """The working clone of the target's repository and branch, for this thread alone; git's
        failures in a person's words."""
        key = f"{target.repository}#{target.branch}"
        path = self.root / hashlib.sha256(key.encode()).hexdigest()[:16]
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        if not lock.acquire(timeout=self.timeout):
            raise GitError(f"{target.describe()}: another commit has not finished in {self.timeout:g}s")
        try:
            yield path
        except git.GitCommandError as error:
            text = " ".join(str(error.stderr or error).replace("stderr: ", "").split())[:300]
            if "did not complete in" in text:
                text = f"no answer in {self.timeout:g}s"
            raise GitError(f"{target.describe()}: {text}") from None
        finally:
            lock.release()

    def look(
        self,
        target: GitTarget,
        release: str,
        stage: str,
        digests: Iterable[str],
        revision: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> tuple[str, str | None, bool, bool]:
        """(the branch's head, the Release's latest commit for the stage, does the file on the
        branch hold every digest, does `revision` (what the GitOps tool applied) hold that commit)."""
        with self._clone(target) as path:
            repo = self._fetched(path, target, credentials)
            branch = "refs/remotes/origin/head"
            head = str(repo.git.rev_parse(branch))
            commit = self._commit_of(repo, target, release, stage)
            text = str(repo.git.show(f"{branch}:{target.file}", with_exceptions=False))
            holds = all(digest in text for digest in digests)
            applied = bool(revision) and self._ancestor(repo, commit or head, str(revision))
            return head, commit, holds, applied

    def append_line(
        self, target: GitTarget, line: str, marker: str, credentials: tuple[str, str] | None = None
    ) -> str | None:
        """Append `line` to the target's file (made if missing) and push, unless a line holding
        `marker` is there already (a retried effect appends nothing); the new commit, or None."""

        def append(repo: git.Repo, path: Path) -> list[str] | None:
            base = "refs/remotes/origin/head"
            has_base = bool(repo.git.rev_parse("--verify", "--quiet", base, with_exceptions=False))
            if has_base:
                repo.git.checkout("--quiet", "--force", "-B", "gantry-target", base)
            file = path / target.path
            text = file.read_text() if has_base and file.is_file() else ""
            if marker in text:
                return None
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
            repo.git.add("--", target.path)
            return [str(repo.git.rev_parse(base))] if has_base else []

        with self._clone(target) as path:
            message = f"ledger: {line[:120]}"
            return self._commit_and_push(path, target, credentials, append, message, missing_ok=True)

    def drop_branch(self, target: GitTarget, branch: str, credentials: tuple[str, str] | None = None) -> None:
        """Delete a proposal's branch in origin (already gone is fine)."""
        with self._clone(target) as path:
            repo = self._fetched(path, target, credentials)
            options = remote_options(self.timeout)
            if repo.git.ls_remote("--heads", "origin", f"refs/heads/{branch}", **options):
                repo.git.push("--quiet", "origin", f":refs/heads/{branch}", **options)

    @staticmethod
    def _commit_of(
        repo: git.Repo, target: GitTarget, release: str, stage: str, branch: str = "refs/remotes/origin/head"
    ) -> str | None:
        """The Release's latest commit for the stage on the branch (its trailers), if any. Not
        limited to the path: a production branch's merge of a tag is the same as the tag there,
        and git log leaves such a merge out of a path's history."""
        trailers = (
            f"--grep=^{RELEASE_TRAILER}: {release}$",
            f"--grep=^{STAGE_TRAILER}: {stage}$",
            "--all-match",
        )
        found = str(repo.git.log("-1", "--format=%H", *trailers, branch)).strip()
        return found or None

    @staticmethod
    def _ancestor(repo: git.Repo, ancestor: str, revision: str) -> bool:
        try:
            repo.git.merge_base("--is-ancestor", ancestor, revision)
        except git.GitCommandError:
            return False
        return True

    def _fetched(
        self, path: Path, target: GitTarget, credentials: tuple[str, str] | None, missing_ok: bool = False
    ) -> git.Repo:
        """The clone, made if need be, with the target branch fetched as refs/remotes/origin/head
        (`missing_ok`: a branch not there yet is made by the first push)."""
        remote, options = with_credentials(target.repository, credentials), remote_options(self.timeout)
        if not (path / ".git").exists():  # the command, not Repo.clone_from: only a command times out
            self.root.mkdir(parents=True, exist_ok=True)
            git.Git(self.root).clone("--quiet", "--no-checkout", "--", remote, str(path), **options)
        repo = git.Repo(path)
        repo.git.remote("set-url", "origin", remote)
        wanted = f"refs/heads/{target.branch}"
        if missing_ok and not repo.git.ls_remote("--heads", "origin", wanted, **options):
            return repo
        repo.git.fetch("--quiet", "origin", f"+{wanted}:refs/remotes/origin/head", **options)
        return repo

    def _write(
        self,
        path: Path,
        target: GitTarget,
        images: list[tuple[str, str]],
        message: str,
        credentials: tuple[str, str] | None,
        snapshot: GitSnapshot | None,
        proposal: str | None,
        undoing: tuple[str, str] | None,
    ) -> str | None:
        def change(repo: git.Repo, path: Path) -> list[str] | None:
            ours = self._commit_of(repo, target, *undoing) if undoing is not None else None
            if undoing is not None and ours is None:
                return None
            repo.git.checkout("--quiet", "--force", "-B", "gantry-target", "refs/remotes/origin/head")
            options = remote_options(self.timeout)
            tagged = self._tagged(repo, target, snapshot, images, options) if snapshot else None
            if snapshot is not None and tagged is not None:
                return self._take_path(repo, target, tagged, merge=snapshot.release is not None)
            if ours is not None and self._undone(repo, target, ours):
                return None
            if ours is not None and self._file_unchanged_since(repo, target, ours):
                return self._take_file(repo, target, f"{ours}^")
            return self._edit_file(path, repo, target, images)

        # A proposal's branch is Gantry's alone (one per Release and stage): pushed with force.
        branch = f"+refs/heads/{proposal}" if proposal else f"refs/heads/{target.branch}"
        return self._commit_and_push(path, target, credentials, change, message, branch)

    def _commit_and_push(
        self,
        path: Path,
        target: GitTarget,
        credentials: tuple[str, str] | None,
        change: Callable[[git.Repo, Path], list[str] | None],
        message: str,
        ref: str | None = None,
        missing_ok: bool = False,
    ) -> str | None:
        """Fetch the branch; `change` stages a change and gives the new commit's parents (None:
        nothing to commit); commit and push to `ref` (git's refspec destination, '+' to force; the
        branch by default). A push refused because the branch moved is redone from the fetch."""
        options = remote_options(self.timeout)
        destination = ref or f"refs/heads/{target.branch}"
        force, ref = ("+", destination[1:]) if destination.startswith("+") else ("", destination)
        for attempt in range(PUSH_ATTEMPTS):
            repo = self._fetched(path, target, credentials, missing_ok)
            parents = change(repo, path)
            if parents is None:
                return None
            with repo.git.custom_environment(**AUTHOR):
                tree = repo.git.write_tree()
                commit = str(repo.git.commit_tree(tree, *(f"-p{p}" for p in parents), "-m", message))
            try:
                repo.git.push("--quiet", "origin", f"{force}{commit}:{ref}", **options)
                return commit
            except git.GitCommandError:
                if attempt == PUSH_ATTEMPTS - 1:
                    raise
        return None  # not reached: the last attempt returns or raises

    @staticmethod
    def _undone(repo: git.Repo, target: GitTarget, ours: str) -> bool:
        """The Release's latest commit for the stage is its own revert: nothing left to undo."""
        return str(repo.git.log("-1", "--format=%s", ours)).startswith("revert(")

    @staticmethod
    def _file_unchanged_since(repo: git.Repo, target: GitTarget, commit: str) -> bool:
        head = "refs/remotes/origin/head"
        return bool(
            repo.git.rev_parse(f"{commit}:{target.file}") == repo.git.rev_parse(f"{head}:{target.file}")
        )

    @staticmethod
    def _take_file(repo: git.Repo, target: GitTarget, revision: str) -> list[str] | None:
        """A rollback where nobody touched the file since the stage's commit: the file exactly as
        it was before that commit (comments, tags and all), not the images written anew."""
        repo.git.checkout(revision, "--", target.file)  # byte for byte, into the index too
        if not repo.git.diff("--cached", "--name-only"):
            return None
        return [str(repo.head.commit.hexsha)]

    @staticmethod
    def _edit_file(
        path: Path, repo: git.Repo, target: GitTarget, images: list[tuple[str, str]]
    ) -> list[str] | None:
        """Write the images into the file and stage it; the new commit's parents, or None when the
        file already says so."""
        file = path / target.file
        if not file.is_file():
            raise GitError(f"{target.describe()}: the file does not exist (create it first)")
        before = file.read_text()
        after = edit(target, before, images)
        if after == before:
            return None
        file.write_text(after)
        repo.git.add("--", target.file)
        return [str(repo.head.commit.hexsha)]

    @staticmethod
    def _take_path(repo: git.Repo, target: GitTarget, tagged: str, merge: bool) -> list[str] | None:
        """Stage the path exactly as the tagged commit has it (files it lacks are removed); the new
        commit's parents (a merge of the tag when promoting), or None when the path is the same."""
        head = str(repo.head.commit.hexsha)
        ours = repo.git.rev_parse("--verify", "--quiet", f"{head}:{target.path}", with_exceptions=False)
        if ours and ours == repo.git.rev_parse(f"{tagged}:{target.path}"):
            return None
        repo.git.rm("-r", "-q", "--ignore-unmatch", "--", target.path)
        repo.git.checkout(tagged, "--", target.path)
        return [head, tagged] if merge else [head]

    def _tagged(
        self,
        repo: git.Repo,
        target: GitTarget,
        snapshot: GitSnapshot,
        images: list[tuple[str, str]],
        options: dict[str, Any],
    ) -> str | None:
        """The commit the snapshot's tag names. Deploying: the tag is made, once, on the source
        stage's commit of this Release, which must hold its digests (never a commit that did not
        pass that stage); restoring: None when the version returned to was never tagged."""
        repo.git.fetch("--quiet", "--prune", "origin", "+refs/tags/*:refs/tags/*", **options)
        ref = f"refs/tags/{snapshot.tag}^{{commit}}"
        existing = str(repo.git.rev_parse("--verify", "--quiet", ref, with_exceptions=False)) or None
        if snapshot.release is None:
            return existing
        source = target.source
        assert source is not None  # a snapshot is made for a target with a source stage only
        commit = existing or self._stage_commit(repo, source, snapshot, options)
        text = repo.git.show(f"{commit}:{source.file}", with_exceptions=False) if commit else ""
        missing = [image for _, image in images if image.rpartition("@")[2] not in text]
        if missing:
            raise GitError(
                f"{source.describe()}: the commit of stage {snapshot.stage} ({commit[:12] or 'none'}) does "
                f"not hold {', '.join(missing)}; production takes only what that stage ran"
            )
        if existing is None:
            with repo.git.custom_environment(**AUTHOR):
                repo.git.tag(
                    "-a", snapshot.tag, commit, "-m", f"{snapshot.tag}: passed stage {snapshot.stage}"
                )
            try:
                repo.git.push("--quiet", "origin", f"refs/tags/{snapshot.tag}", **options)
            except git.GitCommandError:
                repo.git.tag("-d", snapshot.tag, with_exceptions=False)  # tags never move: ask again
                raise
        return commit

    @staticmethod
    def _stage_commit(
        repo: git.Repo, source: GitTarget, snapshot: GitSnapshot, options: dict[str, Any]
    ) -> str:
        """This Release's commit of the source stage (its trailers), or, when that stage had nothing
        to commit (the file already held the digests), the last commit of the file."""
        branch = "refs/remotes/origin/source"
        repo.git.fetch("--quiet", "origin", f"+refs/heads/{source.branch}:{branch}", **options)
        found = GitTargets._commit_of(repo, source, snapshot.release or "", snapshot.stage or "", branch)
        return found or str(repo.git.log("-1", "--format=%H", branch, "--", source.file)).strip()


def edit(target: GitTarget, text: str, images: Iterable[tuple[str, str]]) -> str:
    """The file's text with each container's image written where the target says."""
    _, indent, offset = load_yaml_guess_indent(text)  # keep the file's own indentation
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long image reference onto a second line
    yaml.indent(mapping=indent or 2, sequence=indent or 2, offset=offset or 0)
    doc = yaml.load(text) or {}
    for container, image in images:
        spec = target.image(container)
        if target.format == "Kustomize":
            set_kustomize_image(doc, image, spec.name if spec is not None else None)
        else:
            assert spec is not None and spec.key  # validated before the stage deploys
            set_key(doc, spec.key, image)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of REPOSITORY[:TAG][@DIGEST]."""
    repository, _, digest = image.partition("@")
    tag = None
    slash = repository.rfind("/")
    if ":" in repository[slash + 1 :]:
        repository, tag = repository.rsplit(":", 1)
    return repository, tag, digest or None


def set_kustomize_image(doc: Any, image: str, name: str | None) -> None:
    """A kustomization's `images:` entry for the image: by `name` (the image name the manifests
    use), else the entry already pointing at this repository, else a new entry named after it."""
    repository, tag, digest = split_image(image)
    entries = doc.setdefault("images", [])
    entry = next((e for e in entries if e.get("name") == (name or repository)), None)
    if entry is None and name is None:
        entry = next((e for e in entries if e.get("newName") == repository), None)
    if entry is None:
        entry = {"name": name or repository}
        entries.append(entry)
    if entry["name"] != repository:
        entry["newName"] = repository
    else:
        entry.pop("newName", None)
    for field, value in (("newTag", tag if digest is None else None), ("digest", digest)):
        if value is None:
            entry.pop(field, None)
        else:
            entry[field] = value


KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\[([^=\]]+)=([^\]]*)\]")


def parse_key(key: str) -> list[str | int | tuple[str, str]]:
    """`a.b[0].c[name=web].image` as steps: a map key, a list index, or a list item by field."""
    steps: list[str | int | tuple[str, str]] = []
    position = 0
    while position < len(key):
        if key[position] == "." and position:
            position += 1
        match = KEY_PART.match(key, position)
        if match is None:
            raise GitError(f"key {key!r}: cannot read it from character {position + 1}")
        name, index, field, value = match.groups()
        steps.append(name if name is not None else int(index) if index is not None else (field, value))
        position = match.end()
    return steps


def set_key(doc: Any, key: str, value: str) -> None:
    """Set a dotted key path; missing map keys are created, list items must exist."""
    steps = parse_key(key)
    node = doc
    for step, following in zip(steps, [*steps[1:], None], strict=True):
        last = following is None
        if isinstance(step, str):
            if not isinstance(node, dict):
                raise GitError(f"key {key!r}: {step!r} is not under a mapping")
            if last:
                node[step] = value
                return
            node = node.setdefault(step, {} if not isinstance(following, int | tuple) else [])
        else:
            node = _list_item(node, step, key, value if last else None)
            if last:
                return


def _list_item(node: Any, step: int | tuple[str, str], key: str, value: str | None) -> Any:
    if not isinstance(node, list):
        raise GitError(f"key {key!r}: {step!r} is not under a list")
    if isinstance(step, int):
        index = step if step < len(node) else None
    else:
        field, wanted = step
        index = next((i for i, item in enumerate(node) if str(item.get(field)) == wanted), None)
    if index is None:
        raise GitError(f"key {key!r}: no list item {step!r} in the file")
    if value is not None:
        node[index] = value
    return node[index]
