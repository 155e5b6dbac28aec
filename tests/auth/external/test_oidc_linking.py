"""Who an external identity signs in as: first sign-in, return, linking, and e-mail rules."""

from __future__ import annotations

from tests.support.auth_client import decode, identity_headers, login, register
from tests.support.http import PASSWORD
from tests.support.oidc_flow import account_count, exchange, sign_in_with_fake, tokens_with_fake


async def _jwks(client) -> dict:
    return await (await client.get("/.well-known/jwks.json")).json()


async def _subject(client, tokens: dict) -> str:
    return decode(tokens["access_token"], await _jwks(client))["sub"]


def _as(fake_provider, sub: str, email: str | None = None, verified=True, **claims) -> None:
    fake_provider.account = {"sub": sub, **claims}
    if email is not None:
        fake_provider.account.update(email=email, email_verified=verified)


async def test_first_sign_in_creates_a_passwordless_user_and_its_profile(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    _as(fake_provider, "g-100", "Dana.Smith@Example.test", name="Dana Smith")
    tokens = await tokens_with_fake(client)
    user_id = await _subject(client, tokens)
    claims = decode(tokens["access_token"], await _jwks(client))
    assert claims["scope"] == "orders:read orders:write users:read users:write"
    assert claims["client_id"] == "passgate"
    [call] = users_service.calls
    assert call["user_id"] == user_id
    assert call["body"] == {"username": "dana.smith", "display_name": "Dana Smith"}
    # No password: no password login, and no password to change.
    refused = await client.post("/auth/login", json={"username": "dana.smith", "password": "!"})
    assert refused.status == 401
    change = await client.post(
        "/auth/password",
        json={"current_password": "!", "new_password": "a brand new password"},
        headers=identity_headers(user_id),
    )
    assert change.status == 409
    # The refresh token works like any other.
    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200


async def test_signing_in_again_finds_the_same_user(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    _as(fake_provider, "g-200", "erin@example.test")
    first = await _subject(client, await tokens_with_fake(client))
    _as(fake_provider, "g-200", "erin.new@example.test")  # the address changed; not the user
    second = await _subject(client, await tokens_with_fake(client))
    assert first == second
    assert await account_count(client) == 1 and len(users_service.calls) == 1


async def test_a_taken_username_gets_a_suffix(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    await register(client, "frank")
    _as(fake_provider, "g-300", "frank@example.test")
    await tokens_with_fake(client)
    username = users_service.calls[-1]["body"]["username"]
    assert username.startswith("frank-") and username != "frank"


async def test_failed_provisioning_leaves_no_account(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    users_service.status = 500
    result, _ = await sign_in_with_fake(client)
    assert result == {"oidc_error": "provisioning_failed"}
    assert await account_count(client) == 0
    users_service.status = 201
    result, verifier = await sign_in_with_fake(client)  # the identity is free again
    assert (await exchange(client, result["oidc_code"], verifier)).status == 200


async def test_a_logged_in_user_links_a_provider_and_then_signs_in_with_it(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    alice = await register(client, "alice")
    provisioned = len(users_service.calls)
    _as(fake_provider, "g-400", "someone.else@example.test")
    linked = await tokens_with_fake(client, link_headers=identity_headers(alice))
    assert await _subject(client, linked) == alice
    # Later, signed out, the provider alone signs in to alice; her password still works.
    assert await _subject(client, await tokens_with_fake(client)) == alice
    await login(client, "alice", PASSWORD)
    assert await account_count(client) == 1 and len(users_service.calls) == provisioned


async def test_linking_needs_a_user_token_with_users_write(oidc_auth, fake_config, clock) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    body = {"return_to": "http://app.test/", "binding_challenge": "A" * 43}
    assert (await client.post("/auth/oidc/fake/link", json=body)).status == 401
    alice = await register(client, "alice")
    read_only = identity_headers(alice, scopes="users:read")
    assert (await client.post("/auth/oidc/fake/link", json=body, headers=read_only)).status == 403
    machine = identity_headers("reporting-bot")
    assert (await client.post("/auth/oidc/fake/link", json=body, headers=machine)).status == 403


async def test_an_identity_linked_to_one_user_cannot_be_linked_to_another(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    _as(fake_provider, "g-500", "gina@example.test")
    gina = await _subject(client, await tokens_with_fake(client))
    bob = await register(client, "bob")
    result, _ = await sign_in_with_fake(client, link_headers=identity_headers(bob))
    assert result == {"oidc_error": "identity_conflict"}
    assert await _subject(client, await tokens_with_fake(client)) == gina


async def test_a_verified_email_links_only_where_configuration_allows(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    """Two identities with one verified address: one user only when the provider is
    trusted for e-mail (link_by_verified_email); otherwise two users."""
    trusting = fake_config("fake", link_by_verified_email=True)
    strict = fake_config("strict")
    client = await oidc_auth((trusting, strict), clock=clock)
    _as(fake_provider, "g-600", "Hana@Example.test")
    hana = await _subject(client, await tokens_with_fake(client, "fake"))
    _as(fake_provider, "g-601", "hana@example.test")
    assert await _subject(client, await tokens_with_fake(client, "fake")) == hana
    _as(fake_provider, "g-602", "hana@example.test")
    assert await _subject(client, await tokens_with_fake(client, "strict")) != hana
    assert await account_count(client) == 2


async def test_an_unverified_email_never_links(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    """Not with email_verified false, nor the string "true", nor when absent."""
    client = await oidc_auth((fake_config("fake", link_by_verified_email=True),), clock=clock)
    _as(fake_provider, "g-700", "ivan@example.test")
    ivan = await _subject(client, await tokens_with_fake(client))
    for sub, verified in (("g-701", False), ("g-702", "true"), ("g-703", None)):
        _as(fake_provider, sub, "ivan@example.test", verified=verified)
        if verified is None:
            fake_provider.account.pop("email_verified")
        assert await _subject(client, await tokens_with_fake(client)) != ivan
    assert await account_count(client) == 4


async def test_an_address_verified_by_an_untrusted_provider_is_not_linked_to(
    oidc_auth, fake_config, fake_provider, clock, users_service
) -> None:
    """Provider "strict" is not trusted for e-mail, so what it verified cannot pull a
    trusted provider's identity into that account."""
    client = await oidc_auth(
        (fake_config("fake", link_by_verified_email=True), fake_config("strict")), clock=clock
    )
    _as(fake_provider, "g-800", "judy@example.test")
    first = await _subject(client, await tokens_with_fake(client, "strict"))
    _as(fake_provider, "g-801", "judy@example.test")
    assert await _subject(client, await tokens_with_fake(client, "fake")) != first


async def test_sign_in_link_and_replay_on_sqlite_and_postgresql(
    oidc_auth, fake_config, fake_provider, clock, users_service, database_url
) -> None:
    """The flow, handoff and identity tables behave the same on both databases."""
    client = await oidc_auth((fake_config(),), clock=clock, database_url=database_url)
    _as(fake_provider, "g-900", "pg@example.test")
    first = await _subject(client, await tokens_with_fake(client))
    assert await _subject(client, await tokens_with_fake(client)) == first
    result, verifier = await sign_in_with_fake(client)
    assert (await exchange(client, result["oidc_code"], verifier)).status == 200
    assert (await exchange(client, result["oidc_code"], verifier)).status == 400
    bob = await register(client, "bob")
    conflict, _ = await sign_in_with_fake(client, link_headers=identity_headers(bob))
    assert conflict == {"oidc_error": "identity_conflict"}
    assert await account_count(client) == 2
