"""A TCP gate in front of the real PostgreSQL, as pg-lb is in front of the cluster's leader: open, it
forwards every connection to the server; shut, it accepts and closes at once what arrives and cuts what
is open (what HAProxy does when no node answers its leader check: `on-marked-down shutdown-sessions`)."""
from __future__ import annotations

import socket
import threading

from tests.helpers import WAIT_S, free_port


class Gate:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.open = threading.Event()
        self.refused = 0  # connections closed while shut
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=WAIT_S)
            except OSError:
                client.close()
                continue
            server.settimeout(None)  # an idle connection (a LISTEN, a pooled one) is no broken one
            self._pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def shut(self) -> None:
        self.open.clear()
        for client, server in self._pairs:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._pairs.clear()

    def close(self) -> None:
        self.shut()
        self._listener.close()
