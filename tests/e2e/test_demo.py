"""The README's first command stays true: the quick-start demo runs and ends as it says it does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness.cluster import ROOT
from tests.harness.observability import binaries_missing, require_binaries

pytestmark = pytest.mark.e2e


def test_the_quick_start_demo_walks_the_whole_flow() -> None:
    require_binaries(binaries_missing(), "prometheus prometheus-alertmanager")
    result = subprocess.run(
        [sys.executable, "-m", "tests.harness.demo"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "release tags Gantry pushed to origin: v1.4.0, v1.5.0, v1.5.1" in out
    final = out.split("== 4.")[1]
    assert "shop-v1.5.1   shop          v1.5.1    RolledBack   production" in final
    assert "production    v1.4.0    shop-v1.4.0" in final  # kubectl gantry status after the rollback
    assert "ErrorRateBreach" in final and "Restored" in final
