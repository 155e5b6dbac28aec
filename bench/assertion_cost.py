"""What the gateway-signed identity assertion costs (issue 16 part 2).

The gateway's added work per request on a token-cache hit is `UpstreamIdentity.fields`
(a clock read and a comparison) and the longer request head (the assertion's header line
joined into the head and encoded, as gateway.proxy does). Signing happens once per token
per half-lifetime; backends pay a BLAKE2b hash and a dictionary lookup per request, and an
Ed25519 verification once per assertion.

Figures are process CPU per call (best of several rounds), and with `--callgrind MODE N`
the script runs only the loop of one mode, so that
`valgrind --tool=callgrind python -m bench.assertion_cost --callgrind hit N` minus the same
with `plain` (and each minus its N=0 run) gives instructions per request.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.assertion import GATEWAY_ISSUER, AssertionSigner, AssertionVerifier
from common.assertion_keys import ensure_keys
from common.identity import Identity
from gateway.assertion import UpstreamIdentity
from gateway.verification import Verified

# A typical forwarded request's head fields, as gateway.pipeline joins them.
CLIENT_FIELDS = "User-Agent: bench/1.0\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n"
TAIL_FIELDS = "X-Forwarded-For: 127.0.0.1\r\nX-Request-Id: 0123456789abcdef\r\n"


def _setup(root: Path) -> tuple[UpstreamIdentity, Verified, AssertionSigner, AssertionVerifier]:
    ensure_keys(root / "keys", root / "trust", GATEWAY_ISSUER, time.time(), generate=True)
    signer = AssertionSigner(root / "keys", issuer=GATEWAY_ISSUER, audience="passgate-internal",
                             lifetime=30, clock=time.time)
    identity = Identity(str(uuid.uuid4()), frozenset({"orders:read", "orders:write", "users:read", "users:write"}),
                        "passgate-web", uuid.uuid4().hex)
    verified = Verified.of(identity, time.time() + 900, "kid")
    verifier = AssertionVerifier(root / "trust", audience="passgate-internal", leeway=5,
                                 cache_size=10_000, clock=time.time)
    return UpstreamIdentity(signer, time.time), verified, signer, verifier


def _head(identity_fields: str) -> bytes:
    return f"GET /orders HTTP/1.1\r\nHost: orders\r\n{CLIENT_FIELDS}{identity_fields}{TAIL_FIELDS}\r\n".encode()


def _cpu_per_call(call: Callable[[], Any], *, rounds: int = 5, calls: int = 20_000) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - start) / calls)
    return best


@dataclasses.dataclass(frozen=True)
class AssertionFigures:
    gateway_hit_added_us: float  # per request on a token-cache hit
    gateway_sign_us: float  # once per token per half-lifetime
    backend_hit_us: float
    backend_verify_us: float
    header_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure() -> AssertionFigures:
    with tempfile.TemporaryDirectory() as directory:
        upstream, verified, signer, verifier = _setup(Path(directory))
        upstream.fields(verified)
        with_assertion = _cpu_per_call(lambda: _head(upstream.fields(verified)))
        plain = _cpu_per_call(lambda: _head(verified.fields))
        token = signer.sign(verified.identity).token
        verifier.identity(token)
        backend_hit = _cpu_per_call(lambda: verifier.identity(token))
        fresh = [signer.sign(verified.identity).token for _ in range(2000)]
        tokens = iter(fresh)
        backend_verify = _cpu_per_call(lambda: verifier._verify(next(tokens), time.time()), rounds=1, calls=2000)
        sign = _cpu_per_call(lambda: signer.sign(verified.identity), rounds=3, calls=2000)
        added_bytes = len(upstream.fields(verified)) - len(verified.fields)
    return AssertionFigures(
        gateway_hit_added_us=(with_assertion - plain) * 1e6,
        gateway_sign_us=sign * 1e6,
        backend_hit_us=backend_hit * 1e6,
        backend_verify_us=backend_verify * 1e6,
        header_bytes=added_bytes,
    )


def _callgrind_loop(mode: str, count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        upstream, verified, _, _ = _setup(Path(directory))
        upstream.fields(verified)
        if mode == "hit":
            for _ in range(count):
                _head(upstream.fields(verified))
        else:
            for _ in range(count):
                _head(verified.fields)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.assertion_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--callgrind", nargs=2, metavar=("MODE", "N"), help="hit|plain and a loop count")
    args = parser.parse_args()
    if args.callgrind:
        _callgrind_loop(args.callgrind[0], int(args.callgrind[1]))
        return
    figures = measure()
    for name, value in figures.as_dict().items():
        print(f"{name}: {value:.2f}" if isinstance(value, float) else f"{name}: {value}")


if __name__ == "__main__":
    main()
