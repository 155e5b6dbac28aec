"""A TCP forwarder from a container network to a server on the host's loopback.

The test machine's PostgreSQL and Redis listen on 127.0.0.1 only, which a container cannot
reach; the containers talk to this forwarder at `host.containers.internal` instead (what an
external managed database is to a cluster). It listens on every address, because the podman
bridge's address exists only once a container is attached, and it accepts connections from
the container network's subnet only, closing any other at once.

Written by hand (standard library threads) because it is a test fixture of forty lines; socat
would do the same but is one more package for CI to install.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import threading


class _Handler(socketserver.BaseRequestHandler):
    server: Forwarder

    def handle(self) -> None:
        peer = ipaddress.ip_address(self.client_address[0])
        if peer not in self.server.allowed:
            return  # closed by socketserver on return
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            upstream.settimeout(None)
            pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
            pump.start()
            _copy(self.request, upstream)
            pump.join()


def _copy(source: socket.socket, destination: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            destination.sendall(data)
    except OSError:
        pass
    finally:
        try:
            destination.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Forwarder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int], allowed: str) -> None:
        self.target = target
        self.allowed = ipaddress.ip_network(allowed)
        super().__init__(("0.0.0.0", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> Forwarder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
