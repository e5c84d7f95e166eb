"""A problem with user input, phrased so an SRE can fix it without reading code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """What is wrong (reason), where (field), and what to do about it (fix)."""

    reason: str
    field: str
    message: str
    fix: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}; fix: {self.fix}"
