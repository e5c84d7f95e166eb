"""What every kind's adapter shares: the API client, the read-decide-write loop that survives a
racing writer, and creating one of Gantry's own objects."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gantry.adapters.kube import GROUP, VERSION, ApiError, Kube, custom_path

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 12
T = TypeVar("T")


class Store:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def create_managed(self, kind: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """Create one of Gantry's own objects, or take the one a racing writer just created."""
        try:
            return self.kube.create(custom_path(plural, namespace), managed(kind, namespace, name))
        except ApiError as error:
            if not error.conflict:
                raise
            existing = self.kube.get(custom_path(plural, namespace, name))
            if existing is None:
                raise
            return existing


def managed(kind: str, namespace: str, name: str) -> dict[str, Any]:
    """One of Gantry's own objects as it first creates it: named, labelled, default spec."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "gantry"},
        },
        "spec": {},
    }


def retry_on_conflict(what: str, attempt: Callable[[], T]) -> T:
    """Run a read-decide-write until no one else wrote in between (409 = read and decide again),
    with jitter so racing peers spread out. The first retry reads again at once: a conflict is
    most often one write that came between (Kopf's finalizer on a lock just created), not a race."""
    for number in range(CONFLICT_RETRIES):
        try:
            return attempt()
        except ApiError as error:
            if not error.conflict:
                raise
            log.debug("%s changed under us (attempt %d)", what, number)
            time.sleep(random.uniform(0, 0.05 * number))
    raise ApiError(409, "Conflict", f"{what} kept changing; will retry")
