"""The identity headers the gateway (or, for provisioning, the auth service) sets, for tests
that call a backend directly, as only the gateway may."""

from __future__ import annotations

import uuid

from common.identity import Identity

USER_SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write"})


class IdentityHeaders:
    @staticmethod
    def user(user_id: str, scopes: frozenset[str] = USER_SCOPES) -> dict[str, str]:
        identity = Identity(user_id, scopes, client_id="passgate-web", token_id=uuid.uuid4().hex)
        return identity.to_headers()

    @classmethod
    def admin(cls, user_id: str) -> dict[str, str]:
        return cls.user(user_id, USER_SCOPES | {"admin"})

    @staticmethod
    def provisioner(user_id: str, client_id: str = "passgate-auth") -> dict[str, str]:
        scopes = frozenset({"profiles:provision"})
        return Identity(user_id, scopes, client_id=client_id).to_headers()
