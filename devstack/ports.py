"""Who listens on a port: so the launcher can tell its own process from another that
happens to answer on the same port (a stale stack, a second `make run`).

Linux only, read from /proc (the launcher is a developer tool; no dependency is worth
it for ~30 lines): /proc/net/tcp{,6} maps listening ports to socket inodes, and
/proc/<pid>/fd shows which inodes a process holds. Elsewhere the answers are None and
the launcher falls back to checking that its process is still alive.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind (host, port) now (SO_REUSEADDR, like aiohttp's)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _listening_inodes(port: int) -> set[str] | None:
    inodes: set[str] = set()
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes if found_table else None


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds a socket listening on `port` (None: cannot tell here)."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False  # gone, or not ours to look at
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False
