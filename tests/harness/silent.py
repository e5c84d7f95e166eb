"""A host that accepts connections and never answers: what a hung git server or registry looks like
from the client's side (the TCP handshake succeeds, then nothing, for ever)."""

from __future__ import annotations

import socket
import threading


class SilentServer:
    """Listens on 127.0.0.1; every connection is accepted, held open and never read or written."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def start(self) -> SilentServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closed.set()
        self.sock.close()
        for connection in self.held:
            connection.close()
        self.thread.join(5)

    @property
    def accepted(self) -> int:
        return len(self.held)
