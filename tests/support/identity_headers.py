"""Identity headers as the gateway (or, for provisioning, the auth service) sends them, for
tests that call a backend directly, as only the gateway may: a real assertion signed with a
test key of each issuer. Apps under test trust those keys through `trust_settings()`."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from common.assertion import AUTH_ISSUER, GATEWAY_ISSUER, AssertionSigner
from common.assertion_keys import ensure_keys
from common.identity import ASSERTION_HEADER, Identity
from common.settings import AssertionTrustSettings

USER_SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write"})

_ROOT = Path(tempfile.mkdtemp(prefix="passgate-test-assertion-"))
atexit.register(shutil.rmtree, _ROOT, True)
TRUST_DIR = _ROOT / "trust"


def _signer(issuer: str) -> AssertionSigner:
    keys_dir = _ROOT / issuer
    ensure_keys(keys_dir, TRUST_DIR, issuer, time.time(), generate=True)
    return AssertionSigner(keys_dir, issuer=issuer, audience="passgate-internal", lifetime=60, clock=time.time)


GATEWAY_SIGNER = _signer(GATEWAY_ISSUER)
AUTH_SIGNER = _signer(AUTH_ISSUER)


def stack_signer(data_dir: Path) -> AssertionSigner:
    """The gateway's own assertion keys of a running devstack (`make run` layout): a test
    that calls one of its backends directly vouches with them, as the gateway would."""
    return AssertionSigner(
        data_dir / "assertion-keys-gateway",
        issuer=GATEWAY_ISSUER,
        audience="passgate-internal",
        lifetime=60,
        clock=time.time,
    )


def trust_settings() -> AssertionTrustSettings:
    """What a backend under test is configured with: the test keys of both issuers."""
    return AssertionTrustSettings(trust_dir=TRUST_DIR)


def assertion_headers(identity: Identity, signer: AssertionSigner = GATEWAY_SIGNER) -> dict[str, str]:
    """The one builder: the plain fields and the signed assertion the gateway would send."""
    return {**identity.to_headers(), ASSERTION_HEADER: signer.sign(identity).token}


class IdentityHeaders:
    @staticmethod
    def user(
        user_id: str, scopes: frozenset[str] = USER_SCOPES, *, signer: AssertionSigner = GATEWAY_SIGNER
    ) -> dict[str, str]:
        identity = Identity(user_id, scopes, client_id="passgate-web", token_id=uuid.uuid4().hex)
        return assertion_headers(identity, signer)

    @classmethod
    def admin(cls, user_id: str) -> dict[str, str]:
        return cls.user(user_id, USER_SCOPES | {"admin"})

    @staticmethod
    def provisioner(user_id: str, client_id: str = "passgate-auth") -> dict[str, str]:
        scopes = frozenset({"profiles:provision"})
        return assertion_headers(Identity(user_id, scopes, client_id=client_id), AUTH_SIGNER)
