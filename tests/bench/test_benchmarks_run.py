"""Every benchmark, in a tiny run: none of them can rot unnoticed (the figures are not checked
here; they are printed by the full runs, `make bench`, `make bench-scale`, ...)."""

from __future__ import annotations

import pytest

from bench import architecture, gitops_promotion, lead_time, scale, time_to_rollback, version_next
from tests.harness.observability import binaries_missing, require_binaries

pytestmark = pytest.mark.slow


def test_lead_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert lead_time.main(["--stages", "1,2", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "overhead/stage ms" in out and "summary: overhead per stage" in out


def test_scale(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        scale.main(
            [
                "--smoke",
                "--sizes",
                "0,20",
                "--probes",
                "2",
                "--burst",
                "6",
                "--burst-apps",
                "2",
                "--waiting",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "against the floor" in out
        and "p99 create -> first status write" in out
        and "burst: 6 Releases" in out
    )


def test_time_to_rollback(capsys: pytest.CaptureFixture[str]) -> None:
    require_binaries(binaries_missing(), "prometheus prometheus-alertmanager")
    assert time_to_rollback.main(["--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "run 1:" in out and "lag budget" in out


def test_gitops_promotion(capsys: pytest.CaptureFixture[str]) -> None:
    assert gitops_promotion.main(["--runs", "1"]) == 0
    assert "1 promotions: median decision -> commit" in capsys.readouterr().out


def test_version_next(capsys: pytest.CaptureFixture[str]) -> None:
    assert version_next.main(["--commits", "30", "--runs", "1", "--only-gantry"]) == 0
    assert "gantry version next" in capsys.readouterr().out


def test_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    assert architecture.main() == 0
    assert "import cycles (strongly connected groups): 0" in capsys.readouterr().out
