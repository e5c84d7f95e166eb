"""Real git repositories for tests: a bare origin and a working clone with a committer."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path


class Clone:
    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        result = subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True)
        return result.stdout.strip()

    def commit(self, message: str) -> str:
        change = (
            self.path / f"change-{uuid.uuid4().hex[:8]}.txt"
        )  # a new file each time: merges never conflict
        change.write_text(message + "\n")
        self.git("add", change.name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


def bare(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path


def origin_and_clone(tmp_path: Path, name: str) -> tuple[Path, Clone]:
    origin = bare(tmp_path, name)
    subprocess.run(
        ["git", "clone", "-q", str(origin), str(tmp_path / "work")], check=True, capture_output=True
    )
    work = Clone(tmp_path / "work")
    work.git("config", "user.email", "dev@example.com")
    work.git("config", "user.name", "Dev")
    work.git("checkout", "-q", "-b", "main")
    return origin, work
