"""The signing key ring: several RSA keys with a kid, published before they sign.

On disk (a directory, or a Kubernetes Secret mounted as one, shared by every replica):

    keys.json        {"keys": [{"kid", "file", "created_at", "not_before", "retired_at"}]}
    <kid>.pem        the PKCS#8 private key, mode 0600

A key's life, all decided from these times and the clock, so replicas agree without talking:
  created_at  -> published in the JWKS at once;
  not_before  -> signs from here (created_at + the publish lead), until a newer key's turn;
  retired_at  -> stopped signing (set by the rotation that made its successor);
  retired_at + the longest token lifetime + leeway -> leaves the JWKS; the next rotation
  deletes its file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common.key_files import read_key_entries, write_atomically
from common.timestamps import rfc3339

ALGORITHM = "RS256"
METADATA_FILE = "keys.json"
LOCK_FILE = ".lock"
RSA_KEY_BITS = 2048


class KeySetError(RuntimeError):
    """The key directory is missing, unreadable or inconsistent; the message says which."""


class NoSigningKeyError(RuntimeError):
    """No key may sign now (every key is still pending or retired)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey = dataclasses.field(repr=False)
    created_at: dt.datetime
    not_before: dt.datetime
    retired_at: dt.datetime | None = None

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    def signs_at(self, now: dt.datetime) -> bool:
        return self.not_before <= now and (self.retired_at is None or now < self.retired_at)

    def published_at(self, now: dt.datetime, retention: dt.timedelta) -> bool:
        return self.retired_at is None or now < self.retired_at + retention


class KeyRing:
    """The keys of one replica, reloaded from the shared directory when it changes."""

    def __init__(self, directory: Path, retention: dt.timedelta) -> None:
        self.directory = directory
        self.retention = retention
        self.keys: tuple[SigningKey, ...] = ()
        self._stamp: tuple[int, int, int] | None = None

    def load(self) -> None:
        """Read the key set (blocking file I/O: call it from an executor on a running loop)."""
        stamp = _stamp(self.directory)
        self.keys = tuple(read_key_set(self.directory))
        self._stamp = stamp

    def changed(self) -> bool:
        return _stamp(self.directory) != self._stamp

    def signing_key(self, now: dt.datetime) -> SigningKey:
        """The newest key whose turn has come; never one that is not yet published."""
        candidates = [key for key in self.keys if key.signs_at(now)]
        if not candidates:
            raise NoSigningKeyError("no signing key is active now; run rotate-keys")
        return max(candidates, key=lambda key: (key.not_before, key.created_at))

    def published(self, now: dt.datetime) -> list[SigningKey]:
        return [key for key in self.keys if key.published_at(now, self.retention)]

    def jwks(self, now: dt.datetime) -> dict[str, Any]:
        """RFC 7517 JWK Set of the public halves; private members never leave this module."""
        return {"keys": [key.public_jwk() for key in self.published(now)]}


def _stamp(directory: Path) -> tuple[int, int, int] | None:
    # stat follows symlinks, so a Kubernetes Secret update (an atomic ..data swap) shows up.
    try:
        info = (directory / METADATA_FILE).stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


# -- reading ---------------------------------------------------------------------------


def _parse_time(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise KeySetError(f"{METADATA_FILE}: {field} must be an RFC 3339 string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise KeySetError(f"{METADATA_FILE}: {field} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise KeySetError(f"{METADATA_FILE}: {field} needs a UTC offset")
    return parsed.astimezone(dt.UTC)


def read_metadata(directory: Path) -> list[dict[str, Any]]:
    return read_key_entries(directory / METADATA_FILE, KeySetError, at_least_one=False)


def read_key_set(directory: Path) -> list[SigningKey]:
    keys = []
    for entry in read_metadata(directory):
        kid = entry.get("kid")
        file_name = entry.get("file")
        if not isinstance(kid, str) or not isinstance(file_name, str) or "/" in file_name:
            raise KeySetError(f"{METADATA_FILE}: every key needs a kid and a file name")
        try:
            pem = (directory / file_name).read_bytes()
            private_key = serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError):
            # Never echo key material or parser detail: name the file only.
            raise KeySetError(f"the private key file {file_name} cannot be loaded") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise KeySetError(f"{file_name} is not an RSA private key")
        retired = entry.get("retired_at")
        keys.append(
            SigningKey(
                kid=kid,
                private_key=private_key,
                created_at=_parse_time(entry.get("created_at"), "created_at"),
                not_before=_parse_time(entry.get("not_before"), "not_before"),
                retired_at=None if retired is None else _parse_time(retired, "retired_at"),
            )
        )
    if not keys:
        raise KeySetError(f"{directory / METADATA_FILE} holds no keys")
    return keys


# -- writing (first start with PASSGATE_GENERATE_KEYS, and the rotate-keys command) ----


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise writers (replicas starting together, an operator's rotation) on a lock file."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by the owner only, atomically (temp file, fsync, rename)."""
    write_atomically(path, data, 0o600)


def _new_kid(now: dt.datetime) -> str:
    # Sortable, readable and a valid Kubernetes Secret key: [-._a-zA-Z0-9]+
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _entry(key: SigningKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "file": f"{key.kid}.pem",
        "created_at": rfc3339(key.created_at),
        "not_before": rfc3339(key.not_before),
        "retired_at": None if key.retired_at is None else rfc3339(key.retired_at),
    }


def _new_key(now: dt.datetime, not_before: dt.datetime) -> SigningKey:
    return SigningKey(
        kid=_new_kid(now),
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS),
        created_at=now,
        not_before=not_before,
    )


def _write_key_set(directory: Path, keys: Sequence[SigningKey], new: SigningKey | None) -> None:
    if new is not None:
        pem = new.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(directory / f"{new.kid}.pem", pem)
    # The key file is in place before the metadata names it, so readers never see a gap.
    document = {"keys": [_entry(key) for key in keys]}
    _write_private(directory / METADATA_FILE, (json.dumps(document, indent=2) + "\n").encode())


def ensure_key_set(directory: Path, now: dt.datetime, *, generate: bool) -> bool:
    """Make sure a key set exists; create the first key only when `generate` allows it.

    Returns True when a key was generated. The first key signs at once: no gateway can
    hold an older copy of a key set that did not exist.
    """
    if (directory / METADATA_FILE).exists():
        return False
    if not generate:
        raise KeySetError(
            f"no signing keys in {directory}; mount the shared key Secret there, or set "
            "PASSGATE_GENERATE_KEYS=true for a local run"
        )
    with _locked(directory):
        if (directory / METADATA_FILE).exists():  # another replica won the race
            return False
        key = _new_key(now, now)
        _write_key_set(directory, [key], key)
        return True


def rotate(
    directory: Path, now: dt.datetime, *, lead: dt.timedelta, retention: dt.timedelta
) -> SigningKey:
    """Add a key that is published now and signs after `lead`; prune long-retired keys.
    In an empty directory the first key signs at once, as ensure_key_set makes it (how an
    operator creates the key Secret: deploy/k8s/create-secrets.sh)."""
    with _locked(directory):
        if not (directory / METADATA_FILE).exists():
            first = _new_key(now, now)
            _write_key_set(directory, [first], first)
            return first
        keys = read_key_set(directory)
        not_before = max([now + lead, *(key.not_before for key in keys)])
        new = _new_key(now, not_before)
        # Every key still due to sign hands over when the new one starts.
        kept = [
            key if key.retired_at is not None else dataclasses.replace(key, retired_at=not_before)
            for key in keys
        ]
        expired = [key for key in kept if not key.published_at(now, retention)]
        kept = [key for key in kept if key.published_at(now, retention)]
        _write_key_set(directory, [*kept, new], new)
        for key in expired:
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{key.kid}.pem").unlink()
        return new
