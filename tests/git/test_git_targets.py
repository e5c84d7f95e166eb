"""A stage's place in git, against real repositories: the file edits, one commit per change, a
push that lost a race redone on the new head, and the production branch's tag checks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gantry.adapters.git import GitError
from gantry.adapters.git_targets import GitTargets, edit, set_key
from gantry.domain.flow.model import GitSnapshot
from gantry.domain.inputs.git_target import GitImage, GitTarget
from tests.git.repos import Clone, origin_and_clone

WEB = "reg.example/shop/web@sha256:" + "a" * 64
WEB2 = "reg.example/shop/web@sha256:" + "b" * 64


def kustomize(origin: Path, branch: str = "main") -> GitTarget:
    return GitTarget(str(origin), branch, "staging")


def repository(tmp_path: Path) -> tuple[Path, Clone]:
    origin, work = origin_and_clone(tmp_path, "deploy")
    (work.path / "staging").mkdir()
    (work.path / "staging" / "kustomization.yaml").write_text("resources:\n  - deployment.yaml # the app\n")
    (work.path / "values.yaml").write_text("web:\n  image: old  # set by Gantry\n  replicas: 2\n")
    work.git("add", "-A")
    work.git("commit", "-q", "-m", "chore: start")
    work.git("push", "-q", "origin", "main")
    return origin, work


def show(origin: Path, *what: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(origin), "show", *what], check=True, capture_output=True, text=True
    ).stdout


def test_kustomize_images_keep_the_file_and_follow_its_entries() -> None:
    text = (
        "# overlay\nimages:\n  - name: shop/web   # base name\n"
        "    newName: reg.example/shop/web\n    newTag: '1.0'\n"
    )
    out = edit(GitTarget("r", "main", "p"), text, [("web", WEB)])
    assert out == (
        "# overlay\nimages:\n  - name: shop/web   # base name\n    newName: reg.example/shop/web\n"
        f"    digest: sha256:{'a' * 64}\n"
    )
    # A tag-pinned image (a rollback to what ran before Gantry) is written as a tag.
    back = edit(GitTarget("r", "main", "p"), out, [("web", "reg.example/shop/web:1.0")])
    assert "newTag: '1.0'" in back or "newTag: 1.0" in back
    assert "digest" not in back


def test_yaml_key_paths_reach_maps_and_list_items() -> None:
    doc = {"spec": {"containers": [{"name": "side", "image": "x"}, {"name": "web", "image": "y"}]}}
    set_key(doc, "spec.containers[name=web].image", WEB)
    set_key(doc, "spec.containers[0].image", WEB2)
    set_key(doc, "new.key", "v")
    assert doc == {
        "spec": {"containers": [{"name": "side", "image": WEB2}, {"name": "web", "image": WEB}]},
        "new": {"key": "v"},
    }
    with pytest.raises(GitError, match="no list item"):
        set_key(doc, "spec.containers[name=nope].image", WEB)


def test_one_commit_touching_the_file_only_and_none_when_it_already_says_so(tmp_path: Path) -> None:
    origin, _ = repository(tmp_path)
    targets = GitTargets(tmp_path / "cache", timeout=20)
    values = GitTarget(str(origin), "main", "values.yaml", "HelmValues", (GitImage("web", key="web.image"),))
    first = targets.write(values, [("web", WEB)], "deploy(staging): shop v1\n")
    assert first is not None
    written = show(origin, "main:values.yaml").splitlines()
    assert written[0] == "web:" and written[2] == "  replicas: 2"
    assert written[1].startswith(f"  image: {WEB} ") and written[1].endswith("# set by Gantry")
    assert show(origin, "--name-only", "--format=", first).split() == ["values.yaml"]
    assert targets.write(values, [("web", WEB)], "again") is None  # a retried tick commits nothing


def test_a_push_that_lost_the_race_is_redone_on_the_new_head(tmp_path: Path) -> None:
    origin, work = repository(tmp_path)
    targets = GitTargets(tmp_path / "cache", timeout=20)
    targets.write(kustomize(origin), [("web", WEB)], "deploy 1")
    work.git("pull", "-q", "origin", "main")
    (work.path / "other.txt").write_text("someone else's change\n")
    work.git("add", "other.txt")
    work.git("commit", "-q", "-m", "docs: unrelated")
    work.git("push", "-q", "origin", "main")  # the branch moved since Gantry's clone fetched it
    second = targets.write(kustomize(origin), [("web", WEB2)], "deploy 2")
    assert second is not None
    assert show(origin, "main:other.txt") == "someone else's change\n"
    assert f"sha256:{'b' * 64}" in show(origin, "main:staging/kustomization.yaml")


def test_production_takes_only_a_commit_that_holds_the_release_s_digests(tmp_path: Path) -> None:
    origin, work = repository(tmp_path)
    work.git("push", "-q", "origin", "main:production")
    targets = GitTargets(tmp_path / "cache", timeout=20)
    production = GitTarget(
        str(origin), "production", "staging", promote_from="staging", source=kustomize(origin)
    )
    ask = GitSnapshot("shop/v1", "team/shop-v1", "staging")
    with pytest.raises(GitError, match="production takes only what that stage ran"):
        targets.write(production, [("web", WEB)], "deploy(production): shop v1\n", snapshot=ask)
    targets.write(
        kustomize(origin),
        [("web", WEB)],
        "deploy(staging)\n\nGantry-Release: team/shop-v1\nGantry-Stage: staging\n",
    )
    merged = targets.write(production, [("web", WEB)], "deploy(production): shop v1\n", snapshot=ask)
    assert merged is not None
    assert show(origin, "production:staging/kustomization.yaml") == show(
        origin, "main:staging/kustomization.yaml"
    )
    # Rolling back to a version that was never tagged writes the images instead.
    assert targets.write(production, [("web", WEB2)], "revert", snapshot=GitSnapshot("shop/v0")) is not None
    assert f"sha256:{'b' * 64}" in show(origin, "production:staging/kustomization.yaml")


def test_a_proposal_goes_to_its_own_branch_and_is_replaced_not_stacked(tmp_path: Path) -> None:
    origin, _ = repository(tmp_path)
    targets = GitTargets(tmp_path / "cache", timeout=20)
    staging = GitTarget(str(origin), "main", "staging", proposal_seconds=60)
    first = targets.write(staging, [("web", WEB)], "deploy 1", proposal="gantry/team-shop-v1-staging")
    second = targets.write(staging, [("web", WEB2)], "deploy 2", proposal="gantry/team-shop-v1-staging")
    assert first and second and first != second
    assert show(origin, "--format=%P", "--no-patch", "gantry/team-shop-v1-staging").split() == [
        show(origin, "--format=%H", "--no-patch", "main").strip()
    ]  # on main's head, not on the first proposal
    assert "digest" not in show(origin, "main:staging/kustomization.yaml")  # main untouched
    targets.drop_branch(staging, "gantry/team-shop-v1-staging")
    assert (
        "gantry/"
        not in subprocess.run(
            ["git", "--git-dir", str(origin), "branch"], check=True, capture_output=True, text=True
        ).stdout
    )


def test_a_rollback_restores_the_file_as_it_was_unless_someone_changed_it_since(tmp_path: Path) -> None:
    origin, work = repository(tmp_path)
    targets = GitTargets(tmp_path / "cache", timeout=20)
    trailers = "\n\nGantry-Release: team/shop-v1\nGantry-Stage: staging\n"
    before = show(origin, "main:staging/kustomization.yaml")
    targets.write(kustomize(origin), [("web", WEB)], "deploy(staging): shop v1" + trailers)
    undo = ("team/shop-v1", "staging")
    old = "reg.example/shop/web:1.0"  # what the cluster ran: written only when the file moved on
    assert targets.write(kustomize(origin), [("web", old)], "revert(staging): v1" + trailers, undoing=undo)
    assert show(origin, "main:staging/kustomization.yaml") == before  # byte for byte
    assert (
        targets.write(kustomize(origin), [("web", old)], "again" + trailers, undoing=undo) is None
    )  # undone

    targets.write(kustomize(origin), [("web", WEB)], "deploy(staging): shop v1" + trailers)
    work.git("pull", "-q", "origin", "main")
    path = work.path / "staging" / "kustomization.yaml"
    path.write_text("# a person's edit\n" + path.read_text())
    work.git("commit", "-q", "-am", "docs: note")
    work.git("push", "-q", "origin", "main")
    targets.write(kustomize(origin), [("web", old)], "revert(staging): v1" + trailers, undoing=undo)
    after = show(origin, "main:staging/kustomization.yaml")
    assert "# a person's edit" in after and "newTag: '1.0'" in after  # their edit kept, the image written
    assert targets.write(kustomize(origin), [("web", WEB)], "r", undoing=("team/other", "staging")) is None
