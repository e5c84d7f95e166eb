"""RFC 3339 timestamps as Kubernetes writes them (UTC, whole seconds are not enough for locks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def to_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_rfc3339(text: Any) -> datetime | None:
    """A time read from a record that may lack it or hold something else: None then."""
    if not text:
        return None
    try:
        return from_rfc3339(str(text))
    except ValueError:
        return None
