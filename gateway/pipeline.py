"""The gateway's request pipeline: the one place its order is stated.

Every request, in this order:

  1. edge        request id and trace, metrics, errors as problem+json (common.edge);
  2. hygiene     ambiguous paths refused (gateway.headers.screen, the edge's screen step);
                 client-sent X-User-* fields are never read, and never passed on;
  3. route       aiohttp's router: health, /openapi.json, or (asked last) the route table
                 in service (gateway.routing): a route of it, a CORS preflight of one of
                 its paths (answered by aiohttp-cors without a token), or a 404/405; the
                 table is read once per request, so a reload never changes it mid-way;
  4. CORS        aiohttp-cors adds the allow-origin fields as the answer is prepared, from
                 the route's narrowed policy or the global one (gateway.cors);
                 `response_fields` below completes them (Vary, answers outside its routes);
  5. token       the bearer token verified once, from the verified-token cache when it can;
  6. scopes      the route's required scopes, 403 otherwise;
  7. rate limit  the caller's bucket for the route, 429 otherwise;
  8. forward     the upstream exchange (gateway.proxy), naming the caller in the signed
                 identity assertion backends require (gateway.assertion); for a
                 WebSocket handshake on a websocket route, the relay (gateway.websocket),
                 whose own checks (Origin, handshake shape) come before step 5.

Steps 5-8 are plain calls in one handler per route (`RouteHandler`), with everything that
depends only on the route prepared when its table loads (at start or on reload): the
issuer's verifier, the metric children, the rate-limit policy text, the header rules, the
claims forwarded as headers, the narrowed CORS policy. Every answer, relayed or the gateway's own, passes
`response_fields` once as it is prepared.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from common.app_keys import IDENTITY, REQUEST_ID
from common.context import stamp_response_fields, user_id_var
from common.errors import insufficient_scope, too_many_requests, unauthorized
from gateway.assertion import UpstreamIdentity
from gateway.claims import ClaimHeaders
from gateway.cors import CorsPolicy
from gateway.headers import ForwardedHeaders, upstream_head_fields
from gateway.metrics import GatewayMetrics
from gateway.proxy import Proxy, UpstreamPool
from gateway.ratelimit import Decision, RateLimiter, policy_header
from gateway.routes import RouteConfig
from gateway.verification import TokenError, TokenVerifier, Verified, authenticate

if TYPE_CHECKING:
    from gateway.issuers import AnyIssuer

NO_STORE = "no-store"
# The last step: (request, route, pool, header lines, extra response headers, the verified
# token or None on a public route) -> answer.
Forward = Callable[
    [web.Request, RouteConfig, UpstreamPool, str, Mapping[str, str] | None, Verified | None],
    Awaitable[web.StreamResponse],
]
ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


class RouteHandler:
    """Steps 5-8 for one route."""

    def __init__(
        self,
        route: RouteConfig,
        pool: UpstreamPool,
        *,
        proxy: Proxy,
        forwarded: ForwardedHeaders,
        metrics: GatewayMetrics,
        verifier: TokenVerifier | AnyIssuer | None,
        limiter: RateLimiter | None,
        upstream_identity: UpstreamIdentity | None = None,
        cors: CorsPolicy | None = None,
        forward: Forward | None = None,
    ) -> None:
        self.route = route
        self._pool = pool
        # Step 8: the HTTP proxy, or for a websocket route's handshakes the WebSocket relay
        # (gateway.websocket), chosen once here so no request pays for the choice.
        self._forward = forward or proxy.forward
        self._forwarded = forwarded
        self._metrics = metrics
        self.verifier = verifier
        self.limiter = limiter
        self._upstream_identity = upstream_identity
        self.cors = cors  # the route's narrowed CORS policy; None: the global one
        self._claims = ClaimHeaders(route.claims_to_headers) if route.claims_to_headers else None
        self._public = route.public
        self._policy = policy_header(route) if route.rate_limit is not None else None
        self._scope_failure = metrics.auth_failure["insufficient_scope"]
        self._limited = metrics.rate_limited.labels(route.name)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        client, forwarded_fields = self._forwarded.resolve(request)
        verified: Verified | None = None
        if self._public:
            caller = f"ip:{client}"
            identity_fields = ""
        else:
            assert self.verifier is not None
            verified = await authenticate(request, self.verifier, self._metrics)
            identity = verified.identity
            request[IDENTITY] = identity
            user_id_var.set(identity.subject)
            if not self.route.allows(identity.scopes):
                self._scope_failure.inc()
                raise insufficient_scope(self.route.scope_text())
            caller = f"sub:{identity.subject}"
            identity_fields = (
                verified.fields
                if self._upstream_identity is None
                else self._upstream_identity.fields(verified)
            )
            if self._claims is not None:
                identity_fields += self._claim_fields(verified)
        decision: Decision | None = None
        if self._policy is not None:
            assert self.limiter is not None
            decision = await self.limiter.take(self.route, caller)
            if not decision.allowed:
                self._limited.inc()
                problem = too_many_requests(decision.retry_after)
                problem.headers.update(decision.headers(self._policy))
                raise problem
        fields = (
            upstream_head_fields(request.headers, forward_basic_auth=self.route.forward_basic_auth)
            + identity_fields
            + forwarded_fields
            + f"X-Request-Id: {request[REQUEST_ID]}\r\n"  # traceparent: per attempt (gateway.proxy)
        )
        extra = decision.headers(self._policy) if decision is not None and self._policy else None
        return await self._forward(request, self.route, self._pool, fields, extra, verified)


    def _claim_fields(self, verified: Verified) -> str:
        assert self._claims is not None
        try:
            return self._claims.lines(verified)
        except TokenError as error:
            self._metrics.auth_failure[error.reason].inc()
            raise unauthorized(error.detail, reason=error.reason) from None


def route_handler(request: web.Request) -> RouteHandler | None:
    """The RouteHandler a request was matched to, when a route table matched it
    (gateway.routing's routes carry theirs)."""
    return getattr(request.match_info.route, "route_handler", None)


def response_fields_hook(  # type: ignore[no-untyped-def]
    policy: CorsPolicy, metrics: GatewayMetrics, cors_hooks: Sequence[ResponseHook] = ()
):
    """The on_response_prepare hook of step 4 and of the fields every answer carries
    (common.context's among them: the gateway's app has no hook of its own for those).

    It is the app's only hook. aiohttp-cors's own (`cors_hooks`) run first, from here, for
    requests with an Origin: they add nothing to the others.
    """
    rejected_origin = metrics.cors_rejections.labels("origin_not_allowed")
    rejected_preflight = metrics.cors_rejections.labels("preflight_not_allowed")

    async def response_fields(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None:
            for hook in cors_hooks:
                await hook(request, response)
        stamp_response_fields(request, response)  # request id, no Server, nosniff
        headers = response.headers
        # RFC 9111 3: an answer to a request with credentials is personal; shared caches
        # must not keep it, whatever the backend said. Others keep the backend's choice.
        if hdrs.AUTHORIZATION in request.headers or IDENTITY in request:
            cache_control = headers.get(hdrs.CACHE_CONTROL)
            if cache_control is None or NO_STORE not in cache_control.lower():
                headers[hdrs.CACHE_CONTROL] = NO_STORE
        elif hdrs.CACHE_CONTROL not in headers:
            headers[hdrs.CACHE_CONTROL] = NO_STORE
        # Responses differ by Origin, so shared caches must key on it (Fetch, CORS protocol
        # and HTTP caches); aiohttp-cors never says so.
        vary = headers.get(hdrs.VARY)
        if vary is None:
            headers[hdrs.VARY] = "Origin"
        elif "origin" not in vary.lower() and vary.strip() != "*":
            headers[hdrs.VARY] = f"{vary}, Origin"
        if origin is None or hdrs.ACCESS_CONTROL_ALLOW_ORIGIN in headers:
            return
        preflight = (
            request.method == hdrs.METH_OPTIONS
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        )
        routed = route_handler(request)
        effective = policy if routed is None or routed.cors is None else routed.cors
        if not effective.permits(origin, request.method):
            rejected_origin.inc()
        elif preflight:
            rejected_preflight.inc()  # an allowed origin asked for a method or header we refuse
        else:
            effective.add_headers(response, origin)  # health, /openapi.json: outside aiohttp-cors

    return response_fields
