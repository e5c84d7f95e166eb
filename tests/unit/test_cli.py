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


def closed_port() -> int:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        return int(held.getsockname()[1])  # free once closed: nothing listens there


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'http://127.0.0.1:{closed_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: shop}}]\n"
    )
    return config


def run_command(module: str, args: list[str], kubeconfig: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT / "operator")}
    entry = f"import sys; from {module} import main; sys.exit(main())"
    command = ["-m", module] if module == "gantry" else ["-c", entry]
    return subprocess.run(
        [sys.executable, *command, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "args", "said"),
    [
        ("gantry.plugin.main", ["status"], "error: cannot reach the API server at http://127.0.0.1:"),
        (
            "gantry",
            [
                *["release", "create", "--application", "shop", "--revision", "a" * 40, "--repository", "x"],
                *["--artifact", "web=reg.example.com/web@sha256:" + "a" * 64],
            ],
            "gantry release create: cannot reach the API server at http://127.0.0.1:",
        ),
    ],
)
def test_commands_that_cannot_reach_the_cluster_say_so_in_one_line(
    tmp_path: Path, module: str, args: list[str], said: str
) -> None:
    result = run_command(module, args, str(unreachable_kubeconfig(tmp_path)))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()  # one line: no traceback, no retry warnings
    assert line.startswith(said) and "Connection refused" in line, line


def test_a_kubeconfig_that_does_not_exist_is_named(tmp_path: Path) -> None:
    result = run_command(
        "gantry.plugin.main", ["status"], str(tmp_path / "missing")
    )  # gantry run: test_startup
    assert result.returncode != 0
    assert f"KUBECONFIG={tmp_path / 'missing'}: no such file" in result.stderr, result.stderr
