"""`make sandbox` as a newcomer uses it: real kubectl against the emulated API server and the operator.

`kubectl apply` with validation on (the emulator serves the OpenAPI kubectl asks for), `kubectl
get releases` with the CRDs' printer columns, `kubectl get -w` seeing phases move, and `kubectl
gantry` found on PATH as a plugin. The sandbox always runs its own emulator, whatever the tier.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import ROOT
from tests.harness.observability import free_port
from tests.harness.sandbox import READY

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.emulator_only(
        "the sandbox embeds the emulator whatever the tier: the emulator run covers it"
    ),
]
KUBECTL = shutil.which("kubectl")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[dict[str, str]]:
    if KUBECTL is None:  # not a Debian package in a version that speaks OpenAPI v3 (bookworm: 1.20)
        pytest.skip("needs a kubectl binary (1.27 or newer) on PATH")
    with running_sandbox(tmp_path) as env:
        yield env


@contextlib.contextmanager
def running_sandbox(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`make sandbox` in the background; the environment its printed exports give a terminal."""
    web_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.sandbox", "--dir", str(tmp_path / "sandbox"), "--for", "300"],
        cwd=ROOT,
        env={**os.environ, "GANTRY_WEB_PORT": str(web_port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    said: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and READY not in said[-1:]:
        said.append(process.stdout.readline().strip())
    assert READY in said, "\n".join(said)
    web = f"http://127.0.0.1:{web_port}/?namespace=gantry"
    assert web in "\n".join(said)  # the web view, as printed, shows the examples' application
    with urllib.request.urlopen(
        f"http://127.0.0.1:{web_port}/api/state?namespace=gantry", timeout=10
    ) as answer:
        assert [a["application"] for a in json.load(answer)["applications"]] == ["shop"]
    kubeconfig = next(line.split("=", 1)[1] for line in said if line.startswith("export KUBECONFIG="))
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env["HOME"] = str(tmp_path)  # kubectl's discovery cache: this sandbox's own
    try:
        yield env
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0 and "sandbox stopped" in out, out


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    assert KUBECTL is not None
    done = subprocess.run([KUBECTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_a_newcomer_applies_a_release_with_kubectl_and_watches_it_move(sandbox: dict[str, str]) -> None:
    def phase(name: str) -> str:
        rows = kubectl(sandbox, "get", "releases", "-n", "gantry").splitlines()
        assert rows[0].split() == [
            "NAME",
            "APPLICATION",
            "VERSION",
            "PHASE",
            "STAGE",
            "AGE",
        ]  # printer columns
        return next((row.split()[3] for row in rows[1:] if row.split()[0] == name), "")

    deadline = time.monotonic() + 60
    while phase("shop-v1.4.0") != "Verified" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert phase("shop-v1.4.0") == "Verified"

    watch = subprocess.Popen(
        [str(KUBECTL), "get", "releases", "-n", "gantry", "-w"],
        env=sandbox,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        newer = (ROOT / "examples" / "release.yaml").read_text().replace("v1.4.0", "v1.5.0")
        assert "release.gantry.dev/shop-v1.5.0 created" in kubectl(sandbox, "apply", "-f", "-", stdin=newer)
        deadline = time.monotonic() + 60
        while phase("shop-v1.5.0") != "Verified" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert phase("shop-v1.5.0") == "Verified"
    finally:
        watch.send_signal(signal.SIGINT)
        seen, _ = watch.communicate(timeout=30)
    phases = [
        line.split()[3]
        for line in seen.splitlines()
        if line.startswith("shop-v1.5.0 ") and len(line.split()) > 5
    ]
    assert "Verified" in phases and len(set(phases)) >= 2, seen  # it saw the phases move, as columns

    status = kubectl(sandbox, "gantry", "status", "shop", "-n", "gantry")  # the plugin, found on PATH
    assert re.search(r"^staging\s+v1\.5\.0\s+shop-v1\.5\.0\s+sha256:[0-9a-f]{12}\s", status, re.M), status
    assert "kubectl gantry -n gantry approve shop-v1.5.0" in status

    short = subprocess.run(
        [KUBECTL or "kubectl", "get", "pl", "-n", "gantry"],
        env=sandbox,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 0 and "shop" in short.stdout and "Warning" not in short.stderr, short.stderr
    # What the README's heredocs and a newcomer's checks lean on, as on a real server:
    assert kubectl(sandbox, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}") == "admin"
    described = kubectl(sandbox, "describe", "release", "shop-v1.5.0", "-n", "gantry")
    assert "shop-v1.4.0" not in described.split("Events:")[-1]  # only shop-v1.5.0's own Events
    typo = "apiVersion: gantry.dev/v1alpha1\nkind: Release\nmetadata: {name: typo, namespace: gantry}\n"
    typo += "spec: {application: shop, version: v9.0.0, hotfx: true, artifacts: [{name: web, image: "
    typo += f"'docker.io/library/nginx@sha256:{'a' * 64}'}}]}}\n"
    refused = subprocess.run(
        [KUBECTL or "kubectl", "apply", "--validate=strict", "-f", "-"],
        env=sandbox,
        input=typo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and 'unknown field "spec.hotfx"' in refused.stderr, refused.stderr


PLUGIN_ONLY_KUBECTL = """#!/bin/sh
# kubectl as far as the README's block needs it: a plugin is kubectl-<name> on PATH
[ "$1" = gantry ] && { shift; exec kubectl-gantry "$@"; }
echo "this stand-in kubectl runs plugins only" >&2; exit 1
"""


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readmes_merge_on_main_walk_through_works_as_written(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as env:
        if KUBECTL is None:  # the block uses only kubectl's plugin dispatch: stand in for that
            shim = tmp_path / "bin" / "kubectl"
            shim.parent.mkdir()
            shim.write_text(PLUGIN_ONLY_KUBECTL)
            shim.chmod(0o755)
            env = {**env, "PATH": f"{shim.parent}:{env['PATH']}"}
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_block("sandbox: merge on main")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"release.gantry.dev/shop-[0-9a-f]{12} created", done.stdout), done.stdout
    assert "refs/tags/v1.5.0" in done.stdout  # tagged once dev passed
    assert "Applied: Approve recorded on Release shop-" in done.stdout
