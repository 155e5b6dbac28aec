"""The whole flow against a real, independent OpenID Connect provider (panva/oidc-provider,
started on loopback), its login and consent pages driven over HTTP."""

from __future__ import annotations

from tests.support.auth_client import decode, identity_headers, register
from tests.support.oidc_flow import (
    CALLBACK_BASE,
    account_count,
    callback,
    exchange,
    fragment,
    start,
)
from tests.support.provider_pages import sign_in_at_provider


async def _sign_in(client, browserless, provider_id: str, login: str, **options):
    """(callback response, binding verifier, the provider's redirect URL)."""
    browserless.cookie_jar.clear()  # a fresh browser: no session at the provider yet
    url, verifier = await start(client, provider_id, **options)
    redirect = await sign_in_at_provider(
        browserless, url, login, f"{CALLBACK_BASE}/auth/oidc/{provider_id}/callback"
    )
    return await callback(client, redirect), verifier, redirect


async def _tokens(client, browserless, provider_id: str, login: str, **options) -> dict:
    response, verifier, _ = await _sign_in(client, browserless, provider_id, login, **options)
    result = fragment(response)
    assert "oidc_code" in result, result
    exchanged = await exchange(client, result["oidc_code"], verifier)
    assert exchanged.status == 200, await exchanged.text()
    assert exchanged.headers["Cache-Control"] == "no-store"
    return await exchanged.json()


async def _subject(client, tokens: dict) -> str:
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    return decode(tokens["access_token"], jwks)["sub"]


async def test_sign_in_end_to_end_with_a_real_provider(
    oidc_auth, node_config, browserless, users_service
) -> None:
    """Start, the provider's login and consent forms, callback, handoff, Passgate tokens
    that verify against auth's JWKS; the profile was provisioned; nothing of the provider's
    reaches the page but a one-time code."""
    client = await oidc_auth((node_config(name="Local IdP"),))
    listed = await (await client.get("/auth/oidc/providers")).json()
    assert listed == {"providers": [{"id": "local", "name": "Local IdP"}]}
    response, verifier, redirect = await _sign_in(client, browserless, "local", "kim")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    result = fragment(response)
    assert set(result) == {"oidc_code", "oidc_provider"}
    assert "code=" in redirect and result["oidc_code"] not in redirect
    tokens_response = await exchange(client, result["oidc_code"], verifier)
    assert tokens_response.status == 200
    tokens = await tokens_response.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    user_id = await _subject(client, tokens)
    [call] = users_service.calls
    assert call == {"user_id": user_id, "body": {"username": "kim", "display_name": "kim"}}
    assert await account_count(client) == 1
    # The same person again: the same user, no second profile.
    assert await _subject(client, await _tokens(client, browserless, "local", "kim")) == user_id
    assert len(users_service.calls) == 1


async def test_a_wrong_state_and_a_replayed_code_are_refused_with_a_real_provider(
    oidc_auth, node_config, browserless, users_service
) -> None:
    client = await oidc_auth((node_config(),))
    browserless.cookie_jar.clear()
    url, _ = await start(client, "local")
    redirect = await sign_in_at_provider(
        browserless, url, "lee", f"{CALLBACK_BASE}/auth/oidc/local/callback"
    )
    forged = await callback(client, redirect.replace("state=", "state=0"))
    assert forged.status == 400
    assert await account_count(client) == 0 and users_service.calls == []
    assert "oidc_code" in fragment(await callback(client, redirect))
    replayed = await callback(client, redirect)
    assert replayed.status == 400
    assert await account_count(client) == 1 and len(users_service.calls) == 1


async def test_linking_and_email_rules_with_a_real_provider(
    oidc_auth, node_config, browserless, users_service
) -> None:
    """carol and carol-unverified share an address; only carol's is verified. With the
    provider trusted for e-mail, a verified address links and an unverified one never does;
    a logged-in user links an identity of their own choosing."""
    client = await oidc_auth((node_config("local-trusted", link_by_verified_email=True),))
    carol = await _subject(client, await _tokens(client, browserless, "local-trusted", "carol"))
    # Same address, but the provider says it is not verified: a new, separate user.
    impostor = await _subject(
        client, await _tokens(client, browserless, "local-trusted", "carol-unverified")
    )
    assert impostor != carol
    # A logged-in password user links another identity at the provider.
    nina = await register(client, "nina")
    linked = await _tokens(
        client, browserless, "local-trusted", "nina-at-idp", link_headers=identity_headers(nina)
    )
    assert await _subject(client, linked) == nina
    assert (
        await _subject(client, await _tokens(client, browserless, "local-trusted", "nina-at-idp"))
        == nina
    )
    assert await account_count(client) == 3
