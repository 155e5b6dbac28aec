"""The identity the gateway sends upstream: the plain X-User-* fields and the signed assertion.

Signing costs an Ed25519 signature (about 50 us here), so it is done once per verified
access token and kept on the token's cache entry (gateway.verification.Verified); a request on a
token-cache hit pays a clock read and a comparison. The assertion is re-signed when less
than half its lifetime remains, so the one a backend receives always has at least half its
lifetime left, and it never outlives the access token it vouches for.
"""

from __future__ import annotations


from common.timestamps import EpochClock
from common.assertion import AssertionSigner
from common.assertion_keys import AssertionKeyError
from common.errors import Problem
from common.identity import ASSERTION_HEADER
from gateway.verification import Verified


class UpstreamIdentity:
    def __init__(self, signer: AssertionSigner, clock: EpochClock) -> None:
        self._signer = signer
        self._clock = clock

    def fields(self, verified: Verified) -> str:
        """The header lines naming the caller upstream, signed for at most the lifetime."""
        if self._clock() < verified.renew_at:
            return verified.upstream_fields
        try:
            signed = self._signer.sign(verified.identity, not_after=verified.valid_until)
        except AssertionKeyError:
            # Every key is pending or retired: a broken rotation. Backends would refuse the
            # request anyway; say why here instead.
            raise Problem(
                503,
                "the gateway has no identity assertion key that may sign now",
                kind="assertion-keys-unavailable",
                headers={"Retry-After": "5"},
            ) from None
        verified.upstream_fields = f"{verified.fields}{ASSERTION_HEADER}: {signed.token}\r\n"
        verified.renew_at = signed.issued_at + (signed.expires_at - signed.issued_at) / 2
        return verified.upstream_fields
