"""The programs the demo, the sandbox and the tests start, from the one list in .ci/services."""

from __future__ import annotations

from functools import cache
from pathlib import Path

LIST = Path(__file__).resolve().parents[2] / ".ci" / "services"


@cache
def listed() -> dict[str, tuple[str, frozenset[str]]]:
    """package -> (its program's path, who starts it)."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for line in LIST.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        package, program, *users = line.split()
        found[package] = (program, frozenset(users))
    return found


def program(package: str) -> str:
    return listed()[package][0]


def started_by(user: str) -> dict[str, str]:
    """package -> program, for what `user` (demo, sandbox, tests, envtest) starts."""
    return {package: path for package, (path, users) in listed().items() if user in users}
