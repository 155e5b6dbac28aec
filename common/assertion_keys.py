"""Identity-assertion keys: a signer's private key directory and a backend's trust directory.

The gateway (and auth, for its provisioning call) signs internal identity assertions with
keys of its own, never with auth's access-token keys: a backend that trusts an assertion key
can be impersonated by its holder, and only the callers that need to vouch for someone hold
one. Ed25519 (EdDSA, RFC 8037): signing costs about a third of RSA-2048's here, the keys are
32 bytes, and there is no nonce to get wrong as with ECDSA.

Signer side (a directory, or a Kubernetes Secret mounted as one):

    keys.json   {"keys": [{"kid", "file", "created_at", "not_before", "retired_at"}]}
    <kid>.pem   the PKCS#8 Ed25519 private key, mode 0600

Trust side (a directory, or a ConfigMap/Secret mounted as one, holding only public keys):

    <issuer>.jwks.json   an RFC 7517 JWK Set of that issuer's public keys

The file name binds keys to an issuer: a key of auth's set can never vouch as the gateway.
A rotation writes the new public key into the trust set first and lets the new private key
sign only from `not_before` (now + the publish lead), so every backend trusts a key before
it signs; a retired key stays in the trust set for the longest assertion lifetime plus
leeway, then the next rotation drops it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm
from jwt.exceptions import PyJWTError

from common.key_files import Stamp, locked, read_key_entries, stamp, write_atomically
from common.settings import SettingsError

ALGORITHM = "EdDSA"
METADATA_FILE = "keys.json"
JWKS_SUFFIX = ".jwks.json"
MAX_ASSERTION_LIFETIME = 60.0  # seconds: the cap every setting is checked against
RETENTION = MAX_ASSERTION_LIFETIME + 60.0  # the cap plus the largest leeway a backend allows


class AssertionKeyError(SettingsError):
    """A key directory is missing, unreadable or inconsistent; the message says which.
    A settings error, so a process that starts without its keys says so in one line."""


@dataclasses.dataclass(frozen=True, slots=True)
class AssertionKey:
    kid: str
    private_key: Ed25519PrivateKey = dataclasses.field(repr=False)
    created_at: float
    not_before: float
    retired_at: float | None = None

    def signs_at(self, now: float) -> bool:
        return self.not_before <= now and (self.retired_at is None or now < self.retired_at)

    def trusted_at(self, now: float) -> bool:
        return self.retired_at is None or now < self.retired_at + RETENTION

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def _time(value: Any, field: str) -> float:
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise AssertionKeyError(f"{METADATA_FILE}: {field} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise AssertionKeyError(f"{METADATA_FILE}: {field} needs a UTC offset")
    return parsed.timestamp()


def _rfc3339(value: float) -> str:
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_private_keys(directory: Path) -> list[AssertionKey]:
    entries = read_key_entries(directory / METADATA_FILE, AssertionKeyError)
    keys = []
    for entry in entries:
        kid, file_name = entry.get("kid"), entry.get("file")
        if not isinstance(kid, str) or not isinstance(file_name, str) or "/" in file_name:
            raise AssertionKeyError(f"{METADATA_FILE}: every key needs a kid and a file name")
        try:
            key = serialization.load_pem_private_key((directory / file_name).read_bytes(), None)
        except (OSError, ValueError, TypeError):
            # Never echo key material or parser detail: name the file only.
            raise AssertionKeyError(f"the key file {file_name} cannot be loaded") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AssertionKeyError(f"{file_name} is not an Ed25519 private key")
        retired = entry.get("retired_at")
        keys.append(
            AssertionKey(
                kid,
                key,
                _time(entry.get("created_at"), "created_at"),
                _time(entry.get("not_before"), "not_before"),
                None if retired is None else _time(retired, "retired_at"),
            )
        )
    return keys


class PrivateKeyRing:
    """A signer's keys, re-read when the directory's keys.json changes (no restart)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: Stamp = None
        self.keys: tuple[AssertionKey, ...] = ()
        self.reload()

    def reload(self) -> None:
        current = stamp(self.directory / METADATA_FILE)
        self.keys = tuple(read_private_keys(self.directory))
        self._stamp = current

    def refresh(self) -> None:
        """Re-read on change; a broken update keeps the keys already held (and says so)."""
        if stamp(self.directory / METADATA_FILE) != self._stamp:
            with contextlib.suppress(AssertionKeyError):
                self.reload()

    def signing_key(self, now: float) -> AssertionKey:
        candidates = [key for key in self.keys if key.signs_at(now)]
        if not candidates:
            raise AssertionKeyError(f"no assertion key in {self.directory} may sign now")
        return max(candidates, key=lambda key: (key.not_before, key.created_at))


class TrustedKeys:
    """A backend's public keys by kid, each bound to the issuer its file names.

    Re-read when the directory's files change: the check is a stat per file, made only when
    an assertion names a kid not held (a rotation), never per cached request.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamps: dict[str, Stamp] = {}
        self.keys: dict[str, tuple[str, Ed25519PublicKey]] = {}
        self.reload()

    def _files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob(f"*{JWKS_SUFFIX}"))
        except OSError:
            return []

    def changed(self) -> bool:
        return {str(path): stamp(path) for path in self._files()} != self._stamps

    def reload(self) -> None:
        keys: dict[str, tuple[str, Ed25519PublicKey]] = {}
        stamps = {}
        for path in self._files():
            stamps[str(path)] = stamp(path)
            issuer = path.name[: -len(JWKS_SUFFIX)]
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                for jwk in document["keys"]:
                    public = OKPAlgorithm.from_jwk(jwk)
                    if isinstance(public, Ed25519PublicKey) and isinstance(jwk.get("kid"), str):
                        keys[jwk["kid"]] = (issuer, public)
            except (OSError, ValueError, KeyError, TypeError, PyJWTError):
                # One unreadable file (mid-update, or broken) must not drop the other
                # issuers' keys; its own keys are simply not trusted until it is fixed.
                continue
        self.keys = keys
        self._stamps = stamps


# -- writing (first start with the generate switch, and the rotate command) -----------


def write_trust_file(trust_dir: Path, issuer: str, keys: list[AssertionKey]) -> None:
    document = {"keys": [key.public_jwk() for key in keys]}
    write_atomically(trust_dir / f"{issuer}{JWKS_SUFFIX}", json.dumps(document).encode(), 0o644)


def _write_private_set(directory: Path, keys: list[AssertionKey], new: AssertionKey) -> None:
    pem = new.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomically(directory / f"{new.kid}.pem", pem, 0o600)
    entries = [
        {
            "kid": key.kid,
            "file": f"{key.kid}.pem",
            "created_at": _rfc3339(key.created_at),
            "not_before": _rfc3339(key.not_before),
            "retired_at": None if key.retired_at is None else _rfc3339(key.retired_at),
        }
        for key in keys
    ]
    write_atomically(directory / METADATA_FILE, json.dumps({"keys": entries}, indent=2).encode(), 0o600)


def _new_key(now: float, not_before: float) -> AssertionKey:
    kid = f"{dt.datetime.fromtimestamp(now, dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    return AssertionKey(kid, Ed25519PrivateKey.generate(), now, not_before)


def ensure_keys(keys_dir: Path, trust_dir: Path | None, issuer: str, now: float, *, generate: bool) -> bool:
    """Make sure a key set exists; with `generate`, create the first key (trusted at once:
    nothing can hold an older copy of a set that did not exist). True when one was made."""
    if (keys_dir / METADATA_FILE).exists():
        return False
    if not generate:
        raise AssertionKeyError(
            f"no assertion keys in {keys_dir}; mount the assertion key Secret there, or set "
            "PASSGATE_GENERATE_ASSERTION_KEYS=true for a local run"
        )
    with locked(keys_dir):
        if (keys_dir / METADATA_FILE).exists():
            return False
        key = _new_key(now, now)
        if trust_dir is not None:
            write_trust_file(trust_dir, issuer, [key])  # trusted before it can sign
        _write_private_set(keys_dir, [key], key)
        return True


def rotate(keys_dir: Path, trust_dir: Path, issuer: str, now: float, *, lead: float) -> AssertionKey:
    """Add a key trusted now that signs after `lead`; retire the current one then; drop
    keys whose assertions have all expired. The trust file is written before the key set."""
    with locked(keys_dir):
        keys = read_private_keys(keys_dir)
        not_before = max([now + lead, *(key.not_before for key in keys)])
        new = _new_key(now, not_before)
        kept = [
            key if key.retired_at is not None else dataclasses.replace(key, retired_at=not_before)
            for key in keys
        ]
        dropped = [key for key in kept if not key.trusted_at(now)]
        kept = [key for key in kept if key.trusted_at(now)] + [new]
        write_trust_file(trust_dir, issuer, kept)
        _write_private_set(keys_dir, kept, new)
        for key in dropped:
            with contextlib.suppress(FileNotFoundError):
                (keys_dir / f"{key.kid}.pem").unlink()
        return new


def main(argv: list[str] | None = None) -> int:
    """`python -m common.assertion_keys generate|rotate`: make or rotate a signer's keys."""
    parser = argparse.ArgumentParser(prog="python -m common.assertion_keys", description=main.__doc__)
    parser.add_argument("command", choices=("generate", "rotate"))
    parser.add_argument("--keys", type=Path, required=True, help="the signer's private key directory")
    parser.add_argument("--trust", type=Path, required=True, help="the trust directory to write")
    parser.add_argument("--issuer", required=True, help="passgate-gateway or passgate-auth")
    parser.add_argument("--lead", type=float, default=120.0, help="seconds before a new key signs")
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            made = ensure_keys(args.keys, args.trust, args.issuer, time.time(), generate=True)
            print("generated" if made else "a key set exists already")
        else:
            key = rotate(args.keys, args.trust, args.issuer, time.time(), lead=args.lead)
            print(f"new key {key.kid} signs from {_rfc3339(key.not_before)}")
    except AssertionKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
