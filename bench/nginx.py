"""nginx from Debian as a plain reverse proxy to the same backend, with a generated config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bench.peer import PeerProcess, apt_install, find_binary

CANDIDATE_PACKAGES = ("nginx-light", "nginx")


def find_nginx() -> str | None:
    return find_binary("nginx")


def install_nginx() -> str | None:
    return apt_install(CANDIDATE_PACKAGES, find_nginx, service="nginx")


def render_config(
    directory: Path, *, port: int, upstream: str, set_headers: Mapping[str, str]
) -> str:
    """One worker (it is pinned to one core), keep-alive to the backend, an access log
    (our gateway writes one too), the forwarding headers our gateway adds, and the
    identity headers the backend needs set statically: nginx authenticates nobody."""
    host_port = upstream.removeprefix("http://").rstrip("/")
    headers = "\n".join(
        f'            proxy_set_header {name} "{value}";' for name, value in set_headers.items()
    )
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
worker_processes 1;
daemon off;
pid {directory / 'nginx.pid'};
error_log {directory / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{
    access_log {directory / 'access.log'} combined buffer=64k flush=1s;
{temp}
    upstream backend {{
        server {host_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header Authorization "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
{headers}
        }}
    }}
}}
"""


class Nginx(PeerProcess):
    name = "nginx"

    def start(self, config: str, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Workers run as nobody when the master is root: let them reach the temp paths.
        self.directory.chmod(0o755)
        path = self.directory / "nginx.conf"
        path.write_text(config)
        self.launch([self.binary, "-c", str(path), "-p", str(self.directory), "-e", str(self.directory / "error.log")],
                    timeout=timeout)

    def log_tail(self) -> str:
        try:
            return (self.directory / "error.log").read_text()[-2000:]
        except OSError:
            return ""
