"""A stage's place in git: write digests into one file on one branch, commit, push.

ruamel.yaml edits the file in place (comments, key order and quoting survive), so a commit's diff
shows the digests and nothing else. One working clone per (repository, branch), used by one thread
at a time; a push refused because the branch moved is redone on the new head. A commit touches the
configured file only, and writing what is there already commits nothing (a retried tick, or an
operator killed after its push, repeats nothing).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.util import load_yaml_guess_indent

import git
from gantry.adapters.git import REMOTE_TIMEOUT, GitError, remote_options, with_credentials
from gantry.domain.pipeline import GitTarget

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
    ) -> str | None:
        """Commit `images` (container, image) into the target's file and push; the new commit, or
        None when the file already said so."""
        key = f"{target.repository}#{target.branch}"
        path = self.root / hashlib.sha256(key.encode()).hexdigest()[:16]
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        if not lock.acquire(timeout=self.timeout):
            raise GitError(f"{target.describe()}: another commit has not finished in {self.timeout:g}s")
        try:
            return self._write(path, target, list(images), message, credentials)
        except git.GitCommandError as error:
            text = " ".join(str(error.stderr or error).replace("stderr: ", "").split())[:300]
            if "did not complete in" in text:
                text = f"no answer in {self.timeout:g}s"
            raise GitError(f"{target.describe()}: {text}") from None
        finally:
            lock.release()

    def _write(
        self,
        path: Path,
        target: GitTarget,
        images: list[tuple[str, str]],
        message: str,
        credentials: tuple[str, str] | None,
    ) -> str | None:
        remote, options = with_credentials(target.repository, credentials), remote_options(self.timeout)
        if not (path / ".git").exists():  # the command, not Repo.clone_from: only a command times out
            self.root.mkdir(parents=True, exist_ok=True)
            git.Git(self.root).clone("--quiet", "--no-checkout", "--", remote, str(path), **options)
        repo = git.Repo(path)
        repo.git.remote("set-url", "origin", remote)
        for attempt in range(PUSH_ATTEMPTS):
            repo.git.fetch(
                "--quiet", "origin", f"+refs/heads/{target.branch}:refs/remotes/origin/head", **options
            )
            repo.git.checkout("--quiet", "--force", "-B", "gantry-target", "refs/remotes/origin/head")
            file = path / target.file
            if not file.is_file():
                raise GitError(f"{target.describe()}: the file does not exist (create it first)")
            before = file.read_text()
            after = edit(target, before, images)
            if after == before:
                return None
            file.write_text(after)
            repo.git.add("--", target.file)
            with repo.git.custom_environment(**AUTHOR):
                repo.git.commit("--quiet", "-m", message)
            try:
                repo.git.push("--quiet", "origin", f"HEAD:refs/heads/{target.branch}", **options)
                return str(repo.head.commit.hexsha)
            except git.GitCommandError:
                if attempt == PUSH_ATTEMPTS - 1:
                    raise
        return None  # not reached: the last attempt returns or raises


def edit(target: GitTarget, text: str, images: Iterable[tuple[str, str]]) -> str:
    """The file's text with each container's image written where the target says."""
    _, indent, offset = load_yaml_guess_indent(text)  # keep the file's own indentation
    yaml = YAML()
    yaml.preserve_quotes = True
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
