"""`make sandbox`: a place to try Gantry with real kubectl, no cluster needed.

Starts the emulated API server (with its stand-in deployment and Job controllers) and the real
operator, writes a kubeconfig, loads examples/ (the shop application and its v1.4.0 Release),
prints how to use it, and stays up until Ctrl-C. Real `kubectl apply` (validation on), `kubectl
get releases` (the CRDs' printer columns) and `kubectl gantry` work against it. It speaks JSON
only: kubectl's typed helpers that send protobuf (`kubectl create namespace`) get 415; use
`kubectl apply -f` for those.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import threading
from dataclasses import replace
from pathlib import Path

import yaml

from gantry.settings import Config
from tests.harness.cluster import ROOT, cluster_for_tests
from tests.harness.operator import OperatorThread, RecordingAlerter

NAMESPACE = "gantry"
READY = "sandbox ready"
WEB_PORT = 8090  # GANTRY_WEB_PORT overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".sandbox", help="where the kubeconfig goes")
    parser.add_argument("--for", dest="seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("starting the emulated API server (CRDs from crds/) ...", flush=True)
    with cluster_for_tests(args.dir, emulated=True) as cluster:
        kubeconfig = args.dir / "kubeconfig"
        os.environ["KUBECONFIG"] = str(kubeconfig)
        print("starting the operator (default settings) ...", flush=True)
        # The operator's settings as GANTRY_* say (Config.from_env), with a git cache of its own
        # unless GANTRY_GIT_CACHE names one: Releases from a merge on main work here too.
        settings = Config.from_env()
        config = replace(
            settings,
            metrics_port=0,
            git_cache=settings.git_cache or str(args.dir / "git-cache"),
            web_port=settings.web_port or WEB_PORT,  # the web view, read-only, on 127.0.0.1
        )
        operator = OperatorThread(config, RecordingAlerter()).start()
        try:
            print("loading examples/ (workloads, pipeline, release) ...", flush=True)
            cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            for name in ("workloads.yaml", "pipeline.yaml", "release.yaml"):
                for doc in yaml.safe_load_all((ROOT / "examples" / name).read_text()):
                    cluster.apply(doc)
            print(instructions(kubeconfig, config.web_port), flush=True)
            print(READY, flush=True)
            stop.wait(args.seconds)
        finally:
            operator.stop()
    print("sandbox stopped", flush=True)
    return 0


def instructions(kubeconfig: Path, web_port: int) -> str:
    bin_dir = ROOT / ".venv" / "bin"
    return f"""
The sandbox is up: an emulated API server and the real operator, with examples/ loaded.
In another terminal:

  export KUBECONFIG={kubeconfig}
  export PATH={bin_dir}:$PATH          # gantry and kubectl-gantry
  kubectl get releases -n {NAMESPACE} -w             # shop-v1.4.0: dev, staging (locked, tested), Verified
  kubectl gantry status -n {NAMESPACE}
  sed 's/v1.4.0/v1.5.0/g' examples/release.yaml | kubectl apply -f -
  kubectl gantry approve shop-v1.4.0 -n {NAMESPACE}   # production (no bake here: no analysis set)

The web view (read-only; each button shows its command): http://127.0.0.1:{web_port}/?namespace={NAMESPACE}

From a merge on main (a local origin; the operator here has a git cache): README "Try a merge on
main in the sandbox".

Ctrl-C stops it (and forgets everything).
"""


if __name__ == "__main__":
    raise SystemExit(main())
