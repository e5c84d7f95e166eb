"""Real registries for the registry tests: Debian's docker-registry on 127.0.0.1, open and with htpasswd."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import FAST
from tests.harness.cluster import Cluster
from tests.harness.observability import require_binaries
from tests.harness.operator import OperatorThread, RecordingAlerter
from tests.harness.registry import Registry, binaries_missing

USERS = {"ci": "s3cret"}


def _needs_binaries() -> None:
    require_binaries(binaries_missing(), "docker-registry skopeo")


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _needs_binaries()
    registry = Registry(tmp_path_factory.mktemp("registry-open"))
    registry.start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _needs_binaries()
    registry = Registry(tmp_path_factory.mktemp("registry-auth"), USERS)
    registry.start()
    yield registry
    registry.stop()


@pytest.fixture
def source_operator(cluster: Cluster, tmp_path: Path) -> Iterator[OperatorThread]:
    """The operator with a git cache and a fast ReleaseSource tick."""
    config = replace(FAST, git_cache=str(tmp_path / "git-cache"), source_tick=0.5)
    running = OperatorThread(config, RecordingAlerter()).start()
    yield running
    running.stop()
