"""Key directories on disk, for any component that keeps keys in files (a Kubernetes
Secret or ConfigMap mounted as a directory): change stamps, a writers' lock, atomic writes,
and the `{"keys": [...]}` metadata document.

services/auth/keyring/signing_keys.py keeps its own copies of these for now; it can use this module
once its restructuring settles.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Stamp = tuple[int, int, int] | None


def stamp(path: Path) -> Stamp:
    """What changes when the file is replaced or rewritten. stat follows symlinks, so a
    Kubernetes volume update (an atomic ..data swap) shows up."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise writers (replicas starting together, an operator's rotation) on a lock file."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write with `mode` through a temporary file, fsync and rename: readers see the old
    file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def read_key_entries(
    path: Path, error: type[Exception], *, at_least_one: bool = True
) -> list[dict[str, Any]]:
    """The entries of a `{"keys": [...]}` document (at least one unless `at_least_one` is
    false), or `error` saying why not."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"no key set at {path}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path} cannot be read: {type(exc).__name__}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise error(f'{path} must hold {{"keys": [...]}}')
    if at_least_one and not entries:
        raise error(f'{path} must hold {{"keys": [...]}} with at least one key')
    return entries
