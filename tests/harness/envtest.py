"""The envtest tier: a real etcd and kube-apiserver on 127.0.0.1, from KUBEBUILDER_ASSETS.

What `setup-envtest use -p path` prints (the directory Go operator authors point
KUBEBUILDER_ASSETS at) holds `etcd` and `kube-apiserver`; any such pair works. There is no
controller-manager and no kubelet: the harness's stand-in controllers (api_controllers) do their
part through the API. One control plane serves the whole test session (started on first use,
stopped when the interpreter exits); each test still makes and deletes its own namespaces.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.harness import authz

ASSETS_ENV = "KUBEBUILDER_ASSETS"
ADMIN_TOKEN = "envtest-admin"
_running: tuple[Path, list[subprocess.Popen[bytes]]] | None = None


def assets() -> Path | None:
    """The directory named by KUBEBUILDER_ASSETS, if it holds both binaries."""
    raw = os.environ.get(ASSETS_ENV)
    if not raw:
        return None
    path = Path(raw)
    missing = [b for b in ("etcd", "kube-apiserver") if not (path / b).exists()]
    if missing:
        raise RuntimeError(f"{ASSETS_ENV}={raw} has no {', '.join(missing)} (run: setup-envtest use -p path)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kubeconfig() -> Path:
    """The session's control plane (started on the first call): a kubeconfig for its admin."""
    global _running
    if _running is None:
        found = assets()
        assert found is not None, f"{ASSETS_ENV} is not set"
        _running = start(found, Path(tempfile.mkdtemp(prefix="gantry-envtest-")))
        atexit.register(stop)
    return _running[0]


def token_file() -> str:
    """kube-apiserver's --token-auth-file: token,user,uid,"group1,group2" per line."""
    lines = [f'{ADMIN_TOKEN},admin,admin,"system:masters"']
    for token, user in authz.TEST_USERS.items():
        lines.append(f'{token},{user.name},{user.name},"{",".join(user.groups)}"')
    return "\n".join(lines) + "\n"


def start(binaries: Path, work: Path) -> tuple[Path, list[subprocess.Popen[bytes]]]:
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    key = work / "sa.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    (work / "tokens.csv").write_text(token_file())
    log = (work / "control-plane.log").open("ab")
    etcd = subprocess.Popen(
        [
            str(binaries / "etcd"),
            f"--data-dir={work / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    apiserver = subprocess.Popen(
        [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--cert-dir={work / 'certs'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={api_port}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--token-auth-file={work / 'tokens.csv'}",
            "--service-account-issuer=https://127.0.0.1",
            f"--service-account-key-file={key}",
            f"--service-account-signing-key-file={key}",
            "--disable-admission-plugins=ServiceAccount",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    path = work / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "envtest",
                        # kube-apiserver made its own serving certificate in --cert-dir
                        "cluster": {
                            "server": f"https://127.0.0.1:{api_port}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
                "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
                "current-context": "envtest",
            }
        )
    )
    wait_ready(api_port, [etcd, apiserver], work)
    return path, [apiserver, etcd]


def wait_ready(port: int, processes: list[subprocess.Popen[bytes]], work: Path, timeout: float = 60) -> None:
    import ssl
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            break
        try:
            request = urllib.request.Request(
                f"https://127.0.0.1:{port}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            with urllib.request.urlopen(request, context=context, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    log = (work / "control-plane.log").read_text(errors="replace")[-3000:]
    raise RuntimeError(f"envtest control plane did not become ready:\n{log}")


def stop() -> None:
    global _running
    if _running is None:
        return
    path, processes = _running
    stop_processes(processes)
    shutil.rmtree(path.parent, ignore_errors=True)
    _running = None


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def fresh_control_plane(work: Path) -> Iterator[Path]:
    """A control plane of its own, with nothing installed (what `helm install` meets first): its
    kubeconfig; stopped on leaving."""
    found = assets()
    assert found is not None, f"{ASSETS_ENV} is not set"
    work.mkdir(parents=True, exist_ok=True)
    path, processes = start(found, work)
    try:
        yield path
    finally:
        stop_processes(processes)
