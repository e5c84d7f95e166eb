"""The README's first command stays true: the quick-start demo runs and ends as it says it does,
every time: two demos run side by side, each loading the machine for the other."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness.cluster import ROOT
from tests.harness.observability import binaries_missing, require_binaries

pytestmark = pytest.mark.e2e


def ends_as_the_readme_says(out: str) -> None:
    assert "release tags Gantry pushed to origin: v1.4.0, v1.5.0, v1.5.1" in out
    final = out.split("== 4.")[1]
    assert "shop-v1.5.1   shop          v1.5.1    RolledBack   production" in final
    assert "production    v1.4.0    shop-v1.4.0" in final  # kubectl gantry status after the rollback
    assert "ErrorRateBreach" in final and "Restored" in final


def test_two_quick_start_demos_side_by_side_both_walk_the_whole_flow() -> None:
    require_binaries(binaries_missing(), "prometheus prometheus-alertmanager")
    demos = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.harness.demo"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for demo in demos:
        out, err = demo.communicate(timeout=300)
        assert demo.returncode == 0, out[-3000:] + err[-3000:]
        ends_as_the_readme_says(out)
