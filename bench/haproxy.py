"""HAProxy from Debian (2.6) as the edge peer that verifies JWTs in C, with a generated config.

Unlike nginx (which authenticates nobody), this peer does the gateway's job on every
request: it takes the bearer token (`http_auth_bearer`), pins its algorithm
(`jwt_header_query('$.alg')`), checks the RS256 signature with auth's public key in PEM
(`jwt_verify`: no cache, so every request pays the RSA verification), checks `exp`, `iss`
and `aud`, and sends the token's identity claims upstream as the gateway's X-User-* headers,
over connections reused across clients (`http-reuse always`).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.peer import PeerProcess, apt_install, find_binary

# The only algorithm the gateway accepts from auth (gateway.settings' default).
ALGORITHM = "RS256"
# Claim -> the identity header the gateway derives from it (common.identity).
IDENTITY_CLAIMS = {
    "sub": "X-User-Id",
    "scope": "X-User-Scopes",
    "client_id": "X-User-Client-Id",
    "jti": "X-User-Token-Id",
}


def find_haproxy() -> str | None:
    return find_binary("haproxy")


def install_haproxy() -> str | None:
    return apt_install(("haproxy",), find_haproxy, service="haproxy")


def public_key_pem(jwks: Mapping[str, Any], kid: str) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of the JWKS key named `kid`: what jwt_verify reads.
    Taken from auth's published JWKS, the same document the gateway verifies against."""
    import jwt
    from cryptography.hazmat.primitives import serialization

    for jwk in jwks.get("keys", []):
        if jwk.get("kid") == kid:
            key = jwt.PyJWK(dict(jwk)).key
            return key.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    raise LookupError(f"no key {kid!r} in the JWKS")


def token_kid(token: str) -> str:
    """The `kid` of a compact JWS's header (not verified: it only picks the key)."""
    segment = token.split(".", 1)[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return str(header["kid"])


def tampered(token: str) -> str:
    """The token with the first character of its signature changed: every bit of that
    character is significant (unlike the last one's), so the signature no longer matches."""
    head, payload, signature = token.split(".")
    first = "B" if signature[0] == "A" else "A"
    return f"{head}.{payload}.{first}{signature[1:]}"


def render_config(
    directory: Path, *, port: int, upstream: str, key_file: Path, issuer: str, audience: str
) -> str:
    """One thread (it is pinned to one core, like nginx's one worker), keep-alive reused
    across clients to the backend, an access line per request (the gateway writes one too)."""
    host_port = upstream.removeprefix("http://").rstrip("/")
    bearer = "http_auth_bearer"
    identity = "\n".join(
        f"    http-request set-header {header} %[{bearer},jwt_payload_query('$.{claim}')]"
        for claim, header in IDENTITY_CLAIMS.items()
    )
    return f"""\
global
    nbthread 1
    maxconn 8192
    pidfile {directory / 'haproxy.pid'}
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always

frontend edge
    bind 127.0.0.1:{port}
    # RS256 pinned, then the signature on every request, then the time and audience claims.
    http-request set-var(txn.alg) {bearer},jwt_header_query('$.alg')
    http-request deny deny_status 401 unless {{ var(txn.alg) -m str {ALGORITHM} }}
    http-request deny deny_status 401 unless {{ {bearer},jwt_verify(txn.alg,"{key_file}") -m int 1 }}
    http-request set-var(txn.exp) {bearer},jwt_payload_query('$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
    http-request deny deny_status 401 unless {{ {bearer},jwt_payload_query('$.iss') -m str "{issuer}" }}
    http-request deny deny_status 401 unless {{ {bearer},jwt_payload_query('$.aud') -m str "{audience}" }}
{identity}
    http-request del-header Authorization
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend bare

backend bare
    http-reuse always
    server bare {host_port} maxconn 256
"""


class HAProxy(PeerProcess):
    name = "haproxy"

    @property
    def log_path(self) -> Path:
        return self.directory / "haproxy.log"

    def start(self, config: str, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "haproxy.cfg"
        path.write_text(config)
        check = subprocess.run([self.binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses the config: {check.stderr.strip()[-2000:]}")
        with self.log_path.open("ab") as log:
            # -db: stay in the foreground, one process, so its CPU is this pid's.
            self.launch([self.binary, "-db", "-f", str(path)], output=log, timeout=timeout)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""
