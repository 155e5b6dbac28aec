"""nginx from Debian as a plain reverse proxy to the same backend, with a generated config."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

CANDIDATE_PACKAGES = ("nginx-light", "nginx")


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def install_nginx() -> str | None:
    """apt-get install nginx when missing and we are root on Debian; stop any service the
    package starts (the bench runs its own nginx on a free port)."""
    if find_nginx() or os.geteuid() != 0 or not shutil.which("apt-get"):
        return find_nginx()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for package in CANDIDATE_PACKAGES:
        try:
            subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if find_nginx():
            break
    for stop in (["service", "nginx", "stop"], ["systemctl", "stop", "nginx"]):
        if shutil.which(stop[0]):
            subprocess.run(stop, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return find_nginx()


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


class Nginx:
    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, config: str, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Workers run as nobody when the master is root: let them reach the temp paths.
        self.directory.chmod(0o755)
        path = self.directory / "nginx.conf"
        path.write_text(config)
        self.process = subprocess.Popen(
            [self.binary, "-c", str(path), "-p", str(self.directory), "-e", str(self.directory / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nginx not answering after {timeout:.0f} s: {self.error_tail()}")

    def error_tail(self) -> str:
        try:
            return (self.directory / "error.log").read_text()[-2000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
