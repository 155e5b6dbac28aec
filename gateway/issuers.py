"""Trusted token issuers: Passgate's auth and the ones the routes file declares.

Each issuer has its own key set (its JWKS URL, refreshed in the background with the same
throttles as auth's), its own audience, algorithms, leeway and maximum lifetime, and its
own verified-token cache, so a token is only ever found in the cache of the issuer that
vouched for it. A route accepts the issuers it names (Envoy's `requires_any` over
providers, Oathkeeper's `trusted_issuers`): with one, the route calls that issuer's
verifier directly, as before; with several, the token's unverified `iss` picks the
candidates, and the token must then verify in full under one of them.

Declared issuers follow the routes file: a reload starts the ones added or changed (a
fresh key set and cache) and stops the ones gone; unchanged ones keep their keys and cache.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence

import aiohttp

from common.timestamps import EpochClock
from gateway.jwks import JwksClient
from gateway.metrics import GatewayMetrics
from gateway.routes import DEFAULT_ISSUER, IssuerConfig, RouteConfig
from gateway.settings import GatewaySettings
from gateway.verification import MAX_TOKEN_LENGTH, TokenError, TokenVerifier, Verified

_LOGGER = logging.getLogger(__name__)


class AnyIssuer:
    """Verifies a token under whichever of a route's issuers its `iss` names."""

    def __init__(self, verifiers: Sequence[TokenVerifier]) -> None:
        self._by_iss: dict[str, list[TokenVerifier]] = {}
        for verifier in verifiers:
            self._by_iss.setdefault(verifier.issuer, []).append(verifier)

    async def verify(self, token: str) -> Verified:
        candidates = self._by_iss.get(unverified_issuer(token))
        if not candidates:
            raise TokenError("bad_issuer", "the token was issued by an issuer this route does not trust")
        refused: TokenError | None = None
        for verifier in candidates:  # two declared issuers may share an `iss` (audiences differ)
            try:
                return await verifier.verify(token)
            except TokenError as error:
                refused = refused or error
        assert refused is not None
        raise refused


def unverified_issuer(token: str) -> str:
    """The `iss` of a compact JWT's payload, before any check: it only chooses which
    issuer's keys and rules the token is then verified with in full."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3:
        raise TokenError("malformed", "the token is not a well-formed JWT")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise TokenError("malformed", "the token is not a well-formed JWT") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(issuer, str):
        raise TokenError("missing_claim", "the token lacks the 'iss' claim")
    return issuer


class Issuers:
    """The verifier of every trusted issuer, by name, each with its key-set refresher."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        session: aiohttp.ClientSession,
        metrics: GatewayMetrics,
        clock: EpochClock,
        known_scopes: frozenset[str],
    ) -> None:
        self._settings = settings
        self._session = session
        self._metrics = metrics
        self._clock = clock
        self._known_scopes = known_scopes
        self.default_jwks = self._jwks(settings.jwks_url, settings.algorithms, metrics)
        self.verifiers: dict[str, TokenVerifier] = {
            DEFAULT_ISSUER: self._verifier(
                DEFAULT_ISSUER, self.default_jwks, settings.issuer, settings.audience,
                settings.algorithms, settings.leeway_seconds, settings.max_token_lifetime_seconds,
            )
        }
        self._declared: dict[str, IssuerConfig] = {}
        self._refreshers: dict[str, asyncio.Task[None]] = {}

    @property
    def default(self) -> TokenVerifier:
        return self.verifiers[DEFAULT_ISSUER]

    def for_route(self, route: RouteConfig) -> TokenVerifier | AnyIssuer:
        """What a token route verifies with: its one issuer's verifier, or AnyIssuer."""
        if len(route.issuers) == 1:
            return self.verifiers[route.issuers[0]]
        return AnyIssuer([self.verifiers[name] for name in route.issuers])

    def update(self, declared: Mapping[str, IssuerConfig], known_scopes: frozenset[str]) -> None:
        """Follow the routes file's issuers: start the added or changed, stop the gone."""
        if known_scopes != self._known_scopes:
            # Identities in the caches were cut to the old scope list: verify afresh.
            self._known_scopes = known_scopes
            for verifier in self.verifiers.values():
                verifier.reset(known_scopes)
        for name, config in self._declared.items():
            if declared.get(name) != config:
                self._stop(name)
        for name, config in declared.items():
            if name not in self.verifiers:
                self._start(config)
        self._declared = dict(declared)

    def _start(self, config: IssuerConfig) -> None:
        jwks = self._jwks(config.jwks_url, config.algorithms, self._metrics.issuer_keys(config.name))
        self.verifiers[config.name] = self._verifier(
            config.name, jwks, config.issuer, config.audience, config.algorithms,
            config.leeway, config.max_lifetime,
        )
        self._refreshers[config.name] = asyncio.create_task(jwks.run(), name=f"jwks-{config.name}")
        _LOGGER.info("issuer %s (%s) trusted, keys from %s", config.name, config.issuer, config.jwks_url)

    def _stop(self, name: str) -> None:
        self.verifiers.pop(name, None)
        task = self._refreshers.pop(name, None)
        if task is not None:
            task.cancel()
        self._metrics.forget_issuer(name)
        _LOGGER.info("issuer %s no longer trusted as it was", name)

    async def close(self) -> None:
        tasks = list(self._refreshers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._refreshers.clear()

    def _jwks(self, url: str, algorithms: Sequence[str], metrics: object) -> JwksClient:
        settings = self._settings
        return JwksClient(
            url,
            session=self._session,
            algorithms=algorithms,
            metrics=metrics,  # type: ignore[arg-type]
            clock=self._clock,
            refresh_seconds=settings.jwks_refresh_seconds,
            cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
            max_staleness_seconds=settings.jwks_max_staleness_seconds,
            timeout_seconds=settings.jwks_timeout_seconds,
        )

    def _verifier(
        self, name: str, jwks: JwksClient, issuer: str, audience: str,
        algorithms: Sequence[str], leeway: float, max_lifetime: float,
    ) -> TokenVerifier:
        return TokenVerifier(
            jwks,
            name=name,
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            leeway=leeway,
            max_lifetime=max_lifetime,
            cache_size=self._settings.token_cache_size,
            clock=self._clock,
            metrics=self._metrics,
            known_scopes=self._known_scopes,
        )
