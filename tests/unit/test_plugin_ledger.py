"""`kubectl gantry` reads the production record the operator decides from: the ProductionLedger
when it is newer than the Pipeline's mirror of it, the mirror when the user may not read ledgers."""

from __future__ import annotations

from typing import Any

import pytest

from gantry.adapters.kube import ApiError
from gantry.plugin.main import with_ledgers
from gantry.plugin.views import current_release


def pipeline(revision: int, release: str) -> dict[str, Any]:
    entry = {"release": f"ns/{release}", "result": "Released", "version": "v1", "uid": release}
    return {
        "metadata": {"namespace": "ns", "name": "shop"},
        "status": {"ledgerRevision": revision, "production": {"history": [entry]}, "stageSummary": "a→b"},
    }


class Ledgers:
    def __init__(self, items: list[dict[str, Any]] | None) -> None:
        self.items = items

    def list_items(self, path: str) -> list[dict[str, Any]]:
        assert path.endswith("/productionledgers")
        if self.items is None:
            raise ApiError(403, "Forbidden", "no list on productionledgers")
        return self.items


@pytest.mark.parametrize(
    ("ledger_revision", "expected"), [(8, "ns/shop-v3"), (7, "ns/shop-v2"), (3, "ns/shop-v2")]
)
def test_the_newer_of_ledger_and_mirror_is_what_the_plugin_shows(ledger_revision: int, expected: str) -> None:
    ledger = pipeline(ledger_revision, "shop-v3")
    found = with_ledgers(
        Ledgers([{**ledger, "status": {**ledger["status"], "revision": ledger_revision}}]),
        "ns",
        [pipeline(7, "shop-v2")],
    )
    assert current_release(found[0]) == expected
    assert found[0]["status"]["stageSummary"] == "a→b"  # the rest of the Pipeline's status stays


def test_a_user_who_may_not_read_ledgers_sees_the_mirror() -> None:
    found = with_ledgers(Ledgers(None), "ns", [pipeline(7, "shop-v2")])
    assert current_release(found[0]) == "ns/shop-v2"
