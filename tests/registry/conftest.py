"""Real registries for the registry tests: Debian's docker-registry on 127.0.0.1, open and with htpasswd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.observability import require_binaries
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
