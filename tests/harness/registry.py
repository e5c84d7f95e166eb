"""A real OCI registry (Debian's docker-registry, CNCF Distribution) on 127.0.0.1, and test images.

No Docker engine exists here, so test images are written as OCI image layouts (a gzipped tar
layer, a config, a manifest; optionally an index over two platforms) and pushed with Debian's
skopeo, which preserves digests. skopeo is also the independent check of what our client wrote.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.harness import services
from tests.harness.observability import Daemon, free_port

REGISTRY = services.program("docker-registry")
SKOPEO = services.program("skopeo")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def binaries_missing() -> list[str]:
    return [b for b in (REGISTRY, SKOPEO) if not shutil.which(b)]


class Registry(Daemon):
    """Filesystem storage under `workdir`; with `users`, htpasswd basic auth (bcrypt); with
    `notify` (url, token), push notifications to that URL."""

    def __init__(
        self, workdir: Path, users: dict[str, str] | None = None, notify: tuple[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.workdir = workdir
        self.users = users or {}
        workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if notify is not None:
            # Distribution's notifications: every manifest push POSTed to `url` with a bearer token.
            url, token = notify
            endpoint = {
                "name": "gantry",
                "url": url,
                "headers": {"Authorization": [f"Bearer {token}"]},
                "timeout": "2s",
                "threshold": 3,
                "backoff": "1s",
                "ignoredmediatypes": ["application/octet-stream"],
            }
            config["notifications"] = {"endpoints": [endpoint]}
        if self.users:
            import bcrypt  # only the authenticated registry needs it

            lines = [
                f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(5)).decode()}" for u, p in self.users.items()
            ]
            (workdir / "htpasswd").write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "gantry-tests", "path": str(workdir / "htpasswd")}}
        (workdir / "config.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            [REGISTRY, "serve", str(workdir / "config.yml")], f"http://{self.host}/", workdir / "log"
        )

    def skopeo(self, command: str, *args: str) -> bytes:
        """Run skopeo against this registry (TLS off: it is plain HTTP on loopback), with its credentials."""
        user, password = next(iter(self.users.items()), ("", ""))
        if command == "copy":
            flags = ["--dest-tls-verify=false", *([f"--dest-creds={user}:{password}"] if user else [])]
        else:
            flags = ["--tls-verify=false", *([f"--creds={user}:{password}"] if user else [])]
        result = subprocess.run(
            [SKOPEO, "--insecure-policy", command, *flags, *args], capture_output=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"skopeo {command} {' '.join(args)} failed: {result.stderr.decode().strip()}")
        return result.stdout

    def push(self, layout: Layout, repository: str, tag: str) -> None:
        """Push every image of an OCI layout (an index: all of it) under `repository:tag`."""
        self.skopeo(
            "copy",
            "--all",
            "--preserve-digests",
            f"oci:{layout.path}:{layout.tag}",
            f"docker://{self.host}/{repository}:{tag}",
        )

    def digest(self, repository: str, reference: str) -> str:
        """The manifest digest skopeo sees: sha256 of the raw bytes it fetched."""
        raw = self.skopeo("inspect", "--raw", self.reference(repository, reference))
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def raw(self, repository: str, reference: str) -> dict[str, object]:
        result: dict[str, object] = json.loads(
            self.skopeo("inspect", "--raw", self.reference(repository, reference))
        )
        return result

    def reference(self, repository: str, reference: str) -> str:
        separator = "@" if reference.startswith("sha256:") else ":"
        return f"docker://{self.host}/{repository}{separator}{reference}"


# --- test images ---------------------------------------------------------------------------------


@dataclass
class Layout:
    path: Path
    tag: str
    digest: str  # of what the tag names: the manifest, or the index for a multi-arch image
    children: tuple[str, ...] = ()  # the per-platform manifests of an index


def _write_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(content: str) -> bytes:
    """A reproducible gzipped tar with one file (fixed mtime, so equal content means equal digest)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = content.encode()
        info = tarfile.TarInfo("app/version.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _image(layout: Path, content: str, arch: str) -> dict[str, object]:
    layer = _write_blob(layout, _layer(content))
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/app/run"]},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},  # diff_id of a test layer: not checked
    }
    config_blob = _write_blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_blob},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }
    # Written with a key order and spacing no re-encoder would reproduce: a re-encoded copy shows.
    descriptor = _write_blob(layout, json.dumps(manifest, indent=3).encode())
    return {"mediaType": OCI_MANIFEST, **descriptor, "platform": {"architecture": arch, "os": "linux"}}


def build_image(
    path: Path, content: str, tag: str = "build", platforms: tuple[str, ...] = ("amd64",)
) -> Layout:
    """An OCI layout holding one image (one platform) or an index over several platforms."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    manifests = [_image(path, f"{content} {arch}", arch) for arch in platforms]
    if len(manifests) == 1:
        top = {k: v for k, v in manifests[0].items() if k != "platform"}
        children: tuple[str, ...] = ()
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        top = {"mediaType": OCI_INDEX, **_write_blob(path, json.dumps(index, indent=3).encode())}
        children = tuple(str(m["digest"]) for m in manifests)
    listing = {
        "schemaVersion": 2,
        "manifests": [{**top, "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    (path / "index.json").write_text(json.dumps(listing))
    return Layout(path, tag, str(top["digest"]), children)
