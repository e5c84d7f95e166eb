"""The command line: help, version, and flags that reach the operator's settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gantry import cli
from gantry.settings import Config

ROOT = Path(__file__).resolve().parents[2]


def test_python_dash_m_gantry_shows_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gantry", "run", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0
    assert "--namespace" in result.stdout and "--peering" in result.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("gantry ")


def test_run_passes_flags_to_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Config, bool]] = []
    monkeypatch.setattr(
        "gantry.runner.run", lambda config, wait_for_cluster: seen.append((config, wait_for_cluster))
    )
    monkeypatch.setenv("GANTRY_RECONCILE_INTERVAL", "7")
    assert cli.main(["run", "-n", "team-a", "-n", "team-b", "--peering", "gantry"]) == 0
    assert seen == [
        (Config(reconcile_interval=7.0, namespaces=("team-a", "team-b"), peering="gantry"), False)
    ]
    assert cli.main(["run", "--wait"]) == 0 and seen[-1][1] is True  # keep retrying without a cluster
