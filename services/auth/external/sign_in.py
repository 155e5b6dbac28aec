"""Sign-in with an external OpenID Connect provider: start, callback, linking, handoff.

The three steps, none of which keeps anything in a replica's memory:

1. start: a page asks to sign in (or, with a token, to link) with provider P. A flow row
   holds the nonce, the PKCE verifier, where to return and the page's binding challenge,
   keyed by SHA-256 of the `state`; the page is sent to the provider.
2. callback: the provider sends the browser back with `code` and `state`. The flow row is
   taken (deleted: one use), the code exchanged, the ID token verified, the account found,
   linked or created. The browser is redirected to the page with a one-time handoff code
   in the URL fragment: never a token.
3. exchange: the page posts the handoff code with its binding verifier (whose SHA-256 it
   sent at step 1) and gets Passgate's own access and refresh tokens in the body.

Linking rules (issue 11): an identity is (issuer, subject); it belongs to one account. A
new identity gets a new account (no password) unless the flow is a link started by a
logged-in user, or the provider is trusted for e-mail (`link_by_verified_email`), says
`email_verified: true`, and exactly one account holds that verified address through a
provider that is trusted for e-mail too.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from common.timestamps import Clock
from common.tracing import TraceContext
from services.auth.accounts.registration import ProvisioningError, Registration
from services.auth.accounts.repository import Account, AccountRepository, UsernameTakenError
from services.auth.external.claims import display_name, username_candidates, verified_email
from services.auth.external.config import OidcProvider, OidcSettings, normalize_origin
from services.auth.external.oidc_client import OidcClient, OidcError
from services.auth.external.repository import (
    ExternalIdentity,
    ExternalRepository,
    IdentityTakenError,
    OidcFlow,
    insert_identity,
)
from services.auth.metrics import AuthMetrics
from services.auth.tokens.minter import TokenResponse
from services.auth.tokens.opaque import opaque_hash
from services.auth.tokens.refresh import Sessions

_LOGGER = logging.getLogger(__name__)


class UnknownProviderError(Exception):
    pass


class ReturnToError(Exception):
    """return_to is not a page on an allowed origin."""


class InvalidStateError(Exception):
    """No such flow (wrong, replayed or expired state): nowhere safe to redirect to."""


class CallbackError(Exception):
    """The flow was found but failed: the page at `return_to` is told `reason`."""

    def __init__(self, reason: str, return_to: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.return_to = return_to


class HandoffError(Exception):
    """Unknown, spent, expired or unbound handoff code."""


def _hash(value: str) -> str:
    return opaque_hash(value)


class ExternalSignIn:
    def __init__(
        self,
        settings: OidcSettings,
        clients: Mapping[str, OidcClient],
        repository: ExternalRepository,
        accounts: AccountRepository,
        registration: Registration,
        sessions: Sessions,
        metrics: AuthMetrics,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.repository = repository
        self.accounts = accounts
        self.registration = registration
        self.sessions = sessions
        self.metrics = metrics
        self.clock = clock

    def _client(self, provider_id: str) -> OidcClient:
        client = self.clients.get(provider_id)
        if client is None:
            raise UnknownProviderError(provider_id)
        return client

    def _outcome(self, provider: OidcProvider, result: str) -> None:
        self.metrics.external_logins.labels(provider.id, result).inc()

    # -- 1. start --------------------------------------------------------------------

    async def start(
        self,
        provider_id: str,
        return_to: str,
        binding_challenge: str,
        *,
        link_account_id: str | None = None,
    ) -> str:
        """The provider's authorization URL; raises UnknownProviderError, ReturnToError,
        OidcError (discovery failed: nothing was stored)."""
        client = self._client(provider_id)
        parts = urlsplit(return_to)
        if normalize_origin(return_to) not in self.settings.return_origins or parts.username:
            raise ReturnToError()
        return_to = urlunsplit(parts._replace(fragment=""))
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(64)  # 86 characters; RFC 7636 allows 43-128
        url = await client.authorization_url(state=state, nonce=nonce, code_verifier=code_verifier)
        now = self.clock()
        await self.repository.create_flow(
            _hash(state),
            OidcFlow(
                provider_id=provider_id,
                nonce=nonce,
                code_verifier=code_verifier,
                return_to=return_to,
                binding_hash=binding_challenge,
                link_account_id=link_account_id,
                expires_at=now + dt.timedelta(seconds=self.settings.flow_ttl),
            ),
            now,
        )
        return url

    # -- 2. callback -----------------------------------------------------------------

    async def callback(
        self,
        provider_id: str,
        params: Mapping[str, str],
        *,
        request_id: str | None = None,
        trace: TraceContext | None = None,
    ) -> str:
        """Where to send the browser: the page, with `#oidc_code=...` in the fragment.

        Raises InvalidStateError (nowhere to go back to) or CallbackError (go back with
        `#oidc_error=<reason>`).
        """
        client = self._client(provider_id)
        provider = client.provider
        state = params.get("state")
        flow = await self.repository.take_flow(_hash(state)) if state else None
        if flow is None or flow.provider_id != provider_id or self.clock() >= flow.expires_at:
            self._outcome(provider, "invalid_state")
            raise InvalidStateError()

        def fail(reason: str) -> CallbackError:
            self._outcome(provider, reason)
            return CallbackError(reason, flow.return_to)

        if "error" in params:
            # RFC 6749 4.1.2.1, e.g. access_denied when the user cancelled at the provider.
            raise fail("denied")
        # RFC 9207: a provider that names itself must name itself (mix-up defence).
        if "iss" in params and params["iss"] != provider.issuer:
            raise fail("provider_error")
        code = params.get("code")
        if not code:
            raise fail("provider_error")
        try:
            claims = await self._verified_claims(client, code, flow)
        except OidcError as error:
            _LOGGER.warning(
                "external sign-in refused",
                extra={"provider": provider.id, "reason": error.reason, "error": str(error)},
            )
            raise fail(error.reason) from None
        account, result = await self._resolve(
            provider, claims, flow.link_account_id, request_id=request_id, trace=trace
        )
        if account is None:
            raise fail(result)
        handoff = await self._handoff(account, flow)
        self._outcome(provider, result)
        _LOGGER.info(
            "external sign-in",
            extra={"provider": provider.id, "account_id": account.id, "result": result},
        )
        return f"{flow.return_to}#{urlencode({'oidc_code': handoff, 'oidc_provider': provider.id})}"

    @staticmethod
    async def _verified_claims(client: OidcClient, code: str, flow: OidcFlow) -> dict[str, Any]:
        """The ID token's claims after the code exchange; raises OidcError.

        The provider's tokens end here: only the verified claims go on, and nothing of the
        provider's is stored or forwarded beyond the identity and a verified e-mail.
        """
        answer = await client.exchange_code(code, flow.code_verifier)
        access_token = answer.get("access_token")
        return await client.verify_id_token(
            answer["id_token"],
            nonce=flow.nonce,
            access_token=access_token if isinstance(access_token, str) else None,
        )

    async def _handoff(self, account: Account, flow: OidcFlow) -> str:
        """A one-time code for the page that started `flow`, stored hashed."""
        handoff = secrets.token_urlsafe(32)
        now = self.clock()
        await self.repository.create_handoff(
            _hash(handoff),
            account.id,
            flow.binding_hash,
            now,
            now + dt.timedelta(seconds=self.settings.handoff_ttl),
        )
        return handoff

    async def _resolve(
        self,
        provider: OidcProvider,
        claims: Mapping[str, Any],
        link_account_id: str | None,
        *,
        request_id: str | None,
        trace: TraceContext | None,
    ) -> tuple[Account | None, str]:
        """The account this identity signs in to, and the result label; (None, reason)
        when the identity may not be used."""
        now = self.clock()
        email = verified_email(claims)
        identity = ExternalIdentity(provider.issuer, claims["sub"], "", provider.id, email)
        existing = await self.repository.external_identity(identity.issuer, identity.subject)
        if link_account_id is not None:
            account = await self.accounts.by_id(link_account_id)
            if account is None:
                return None, "identity_conflict"
            if existing is not None:
                if existing.account_id != account.id:
                    return None, "identity_conflict"
                await self.repository.touch_identity(existing, email, now)
                return account, "linked"
            try:
                await self.repository.link_identity(_owned(identity, account.id), now)
            except IdentityTakenError:
                return None, "identity_conflict"
            return account, "linked"
        if existing is not None:
            await self.repository.touch_identity(existing, email, now)
            account = await self.accounts.by_id(existing.account_id)
            return account, "success"
        if provider.link_by_verified_email and email is not None:
            trusted = {p.id for p in self.settings.providers if p.link_by_verified_email}
            owners = {
                match.account_id
                for match in await self.repository.identities_with_verified_email(email)
                if match.provider_id in trusted
            }
            if len(owners) == 1:
                owner = owners.pop()
                try:
                    await self.repository.link_identity(_owned(identity, owner), now)
                except IdentityTakenError:  # a concurrent first sign-in linked it
                    pass
                return await self._account_of(identity), "linked_by_email"
        return await self._create(identity, claims, request_id=request_id, trace=trace)

    async def _account_of(self, identity: ExternalIdentity) -> Account | None:
        current = await self.repository.external_identity(identity.issuer, identity.subject)
        return await self.accounts.by_id(current.account_id) if current else None

    async def _create(
        self,
        identity: ExternalIdentity,
        claims: Mapping[str, Any],
        *,
        request_id: str | None,
        trace: TraceContext | None,
    ) -> tuple[Account | None, str]:
        """First sign-in: a new account without a password, its identity, its profile."""
        now = self.clock()

        async def identity_taken() -> None:
            if await self.repository.external_identity(identity.issuer, identity.subject):
                raise IdentityTakenError()

        try:
            account = await self.registration.register_account(
                username_candidates(claims),
                password=None,
                display_name=display_name(claims, "") or None,
                together=lambda account: [insert_identity(_owned(identity, account.id), now)],
                explain_conflict=identity_taken,
                request_id=request_id,
                trace=trace,
            )
        except IdentityTakenError:  # a concurrent first sign-in created it
            return await self._account_of(identity), "success"
        except (UsernameTakenError, ProvisioningError):
            return None, "provisioning_failed"
        return account, "created"

    # -- 3. exchange -----------------------------------------------------------------

    async def exchange(self, code: str, binding_verifier: str) -> TokenResponse:
        """Passgate tokens for a handoff code; raises HandoffError."""
        taken = await self.repository.take_handoff(_hash(code))
        if taken is None:
            raise HandoffError("unknown or spent")
        account_id, binding_hash, expires_at = taken
        if self.clock() >= expires_at:
            raise HandoffError("expired")
        # The page that started the flow holds the verifier; a page that merely received
        # the redirect (login CSRF: an attacker's callback URL opened in a victim's
        # browser) does not.
        if not hmac.compare_digest(create_s256_code_challenge(binding_verifier), binding_hash):
            raise HandoffError("not bound to this page")
        account = await self.accounts.by_id(account_id)
        if account is None:
            raise HandoffError("account gone")
        response = await self.sessions.login(account.id, account.role, None)
        self.metrics.tokens_issued.labels("oidc").inc()
        return response


def _owned(identity: ExternalIdentity, account_id: str) -> ExternalIdentity:
    return ExternalIdentity(
        identity.issuer,
        identity.subject,
        account_id,
        identity.provider_id,
        identity.verified_email,
    )
