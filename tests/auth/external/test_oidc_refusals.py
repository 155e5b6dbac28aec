"""Every forged or replayed step of an external sign-in is refused, and creates no user.

The ID-token cases use the fake provider, which signs whatever the test asks for; the
state and replay cases run against it and against the real provider alike.
"""

from __future__ import annotations

import logging

from joserfc.jwk import RSAKey

from tests.support import oidc_fake_provider as fake
from tests.support.oidc_flow import (
    account_count,
    callback,
    exchange,
    fragment,
    sign_in_with_fake,
    start,
    visit_fake,
)


async def test_the_fake_flow_works_when_nothing_is_tampered_with(
    oidc_auth, fake_config, fake_provider, clock, users_service, caplog
) -> None:
    """The control case for everything below: same provider, same steps, a user at the end.
    No secret of the flow reaches a log line."""
    caplog.set_level(logging.INFO)  # what runs in production (DEBUG shows SQL parameters)
    client = await oidc_auth((fake_config(),), clock=clock)
    result, verifier = await sign_in_with_fake(client)
    assert set(result) == {"oidc_code", "oidc_provider"} and result["oidc_provider"] == "fake"
    response = await exchange(client, result["oidc_code"], verifier)
    assert response.status == 200
    assert await account_count(client) == 1
    [authorization] = fake_provider.authorizations
    # PKCE S256, a nonce and a state were sent; the verifier never was.
    assert authorization["code_challenge_method"] == "S256"
    assert len(authorization["state"]) >= 43 and len(authorization["nonce"]) >= 43
    assert authorization["redirect_uri"] == "http://passgate.test/auth/oidc/fake/callback"
    assert authorization["scope"] == "openid email profile"
    tokens = await response.json()
    secrets = [
        *fake_provider.issued,
        *fake_provider.codes,
        authorization["state"],
        authorization["nonce"],
        result["oidc_code"],
        verifier,
        tokens["access_token"],
        tokens["refresh_token"],
        fake.CLIENT_SECRET,
    ]
    # aiohttp.access here is the test server's default access log, which prints query
    # strings; the services' own (common.logging) logs the path without its query.
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.name != "aiohttp.access"
    )
    assert "external sign-in" in logged
    for secret in secrets:
        assert secret not in logged


async def _refused(client, users_service, reason: str) -> None:
    result, _ = await sign_in_with_fake(client)
    assert result == {"oidc_error": reason}
    assert await account_count(client) == 0
    assert users_service.calls == []


async def test_an_id_token_with_another_nonce_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    fake_provider.tamper = lambda claims, header: claims.update(nonce="a-nonce-from-elsewhere")
    await _refused(client, users_service, "id_token_invalid")


async def test_an_id_token_without_the_nonce_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    fake_provider.tamper = lambda claims, header: claims.pop("nonce")
    await _refused(client, users_service, "id_token_invalid")


async def test_an_id_token_for_another_audience_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    fake_provider.tamper = lambda claims, header: claims.update(aud="another-client")
    await _refused(client, users_service, "id_token_invalid")


async def test_an_id_token_for_several_audiences_needs_azp_to_name_us(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    fake_provider.tamper = lambda claims, header: claims.update(
        aud=[claims["aud"], "another-client"], azp="another-client"
    )
    await _refused(client, users_service, "id_token_invalid")


async def test_an_expired_id_token_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)

    def expired(claims, header):
        claims.update(iat=claims["iat"] - 3600, exp=claims["iat"] - 3600 + 300)

    fake_provider.tamper = expired
    await _refused(client, users_service, "id_token_invalid")


async def test_an_id_token_from_another_issuer_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    fake_provider.tamper = lambda claims, header: claims.update(iss="https://issuer.example")
    await _refused(client, users_service, "id_token_invalid")


async def test_an_id_token_signed_by_an_unknown_key_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    """A key the provider's JWKS does not hold, under a new kid (after one JWKS refetch)
    and under the published kid."""
    client = await oidc_auth((fake_config(),), clock=clock)
    rogue = RSAKey.generate_key(2048, parameters={"kid": "rogue"})

    def new_kid(claims, header):
        header["kid"] = "rogue"
        return rogue

    fake_provider.tamper = new_kid
    await _refused(client, users_service, "id_token_invalid")
    fake_provider.tamper = lambda claims, header: rogue  # the published kid, a foreign key
    await _refused(client, users_service, "id_token_invalid")


async def test_an_id_token_with_a_symmetric_algorithm_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    """HS256 keyed with the client secret: a classic algorithm confusion. Pinned out."""
    from joserfc.jwk import OctKey

    client = await oidc_auth((fake_config(),), clock=clock)

    def symmetric(claims, header):
        header.update(alg="HS256")
        return OctKey.import_key("fake-client-secret-fake-client-secret")

    fake_provider.tamper = symmetric
    await _refused(client, users_service, "id_token_invalid")


async def test_a_wrong_state_is_refused(oidc_auth, fake_config, clock, users_service) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    url, _ = await start(client, "fake")
    redirect = await visit_fake(url)
    forged = redirect.replace("state=", "state=x")
    response = await callback(client, forged)
    assert response.status == 400
    assert (await response.json())["type"].endswith("invalid-state")
    missing = await client.get("/auth/oidc/fake/callback?code=abc", allow_redirects=False)
    assert missing.status == 400
    assert await account_count(client) == 0 and users_service.calls == []
    # The flow's own state still works once: the forged one did not spend it.
    assert "oidc_code" in fragment(await callback(client, redirect))


async def test_a_state_from_another_provider_or_past_its_lifetime_is_refused(
    oidc_auth, fake_config, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(), fake_config("other")), clock=clock)
    url, _ = await start(client, "fake")
    redirect = await visit_fake(url)
    response = await callback(client, redirect.replace("/fake/", "/other/"))
    assert response.status == 400
    url, _ = await start(client, "fake")
    redirect = await visit_fake(url)
    clock.advance(601)
    assert (await callback(client, redirect)).status == 400
    assert await account_count(client) == 0 and users_service.calls == []


async def test_a_replayed_callback_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    """The same code and state twice: the first signs in, the second finds no flow and
    never reaches the provider; one user, one handoff."""
    client = await oidc_auth((fake_config(),), clock=clock)
    url, verifier = await start(client, "fake")
    redirect = await visit_fake(url)
    first = fragment(await callback(client, redirect))
    requests_before = fake_provider.token_requests
    replay = await callback(client, redirect)
    assert replay.status == 400
    assert fake_provider.token_requests == requests_before
    assert await account_count(client) == 1 and len(users_service.calls) == 1
    assert (await exchange(client, first["oidc_code"], verifier)).status == 200


async def test_a_provider_code_spent_elsewhere_is_refused(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    """A code the provider no longer honours (already redeemed): nothing is created."""
    client = await oidc_auth((fake_config(),), clock=clock)
    url, _ = await start(client, "fake")
    redirect = await visit_fake(url)
    fake_provider.codes.clear()  # as if someone had redeemed it first
    assert fragment(await callback(client, redirect)) == {"oidc_error": "token_exchange_failed"}
    assert await account_count(client) == 0 and users_service.calls == []


async def test_the_handoff_code_is_single_use_short_lived_and_bound_to_the_page(
    oidc_auth, fake_config, clock
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    # Another page's verifier (login CSRF: the victim's tab never started this flow).
    result, verifier = await sign_in_with_fake(client)
    wrong = await exchange(client, result["oidc_code"], "x" * 43)
    assert wrong.status == 400
    assert (await exchange(client, result["oidc_code"], verifier)).status == 400  # burnt
    # Replayed.
    result, verifier = await sign_in_with_fake(client)
    assert (await exchange(client, result["oidc_code"], verifier)).status == 200
    replay = await exchange(client, result["oidc_code"], verifier)
    assert replay.status == 400
    assert (await replay.json())["error"] == "invalid_grant"
    # Expired.
    result, verifier = await sign_in_with_fake(client)
    clock.advance(61)
    assert (await exchange(client, result["oidc_code"], verifier)).status == 400


async def test_a_denial_at_the_provider_goes_back_to_the_page(
    oidc_auth, fake_config, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    url, _ = await start(client, "fake")
    redirect = await visit_fake(url)
    state = dict(p.split("=", 1) for p in redirect.split("?", 1)[1].split("&"))["state"]
    response = await client.get(
        f"/auth/oidc/fake/callback?error=access_denied&state={state}", allow_redirects=False
    )
    assert fragment(response) == {"oidc_error": "denied"}
    assert await account_count(client) == 0


async def test_a_mixed_up_issuer_parameter_is_refused(
    oidc_auth, fake_config, clock, users_service
) -> None:
    """RFC 9207: the callback's `iss` must name the provider the flow was started with."""
    client = await oidc_auth((fake_config(),), clock=clock)
    url, _ = await start(client, "fake")
    redirect = await visit_fake(url)
    forged = redirect.split("&iss=")[0] + "&iss=https%3A%2F%2Fevil.example"
    assert fragment(await callback(client, forged)) == {"oidc_error": "provider_error"}
    assert await account_count(client) == 0
