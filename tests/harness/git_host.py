"""A local stand-in for a git host's merge request API (GitLab's and GitHub's, the one call Gantry
makes): it records what it was asked, answers as the host does, and refuses a second request for
the same branch the way each host does. On 127.0.0.1 only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GitHost:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []  # (path, headers, body)
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                host.requests.append((self.path, dict(self.headers), body))
                branch = body.get("source_branch") or body.get("head")
                if (
                    sum(1 for _, _, b in host.requests if (b.get("source_branch") or b.get("head")) == branch)
                    > 1
                ):
                    self._answer(409 if "source_branch" in body else 422, {"message": "already exists"})
                    return
                self._answer(201, {"web_url" if "source_branch" in body else "html_url": f"{host.url}/mr/1"})

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GitHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
