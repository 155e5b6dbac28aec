"""Provider configuration is checked at start; discovery is checked and cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.settings import SettingsError
from services.auth.external.claims import display_name
from services.auth.external.config import OidcSettings
from services.auth.settings import AuthSettings
from tests.support.oidc_flow import start as start_flow
from tests.support.oidc_flow import tokens_with_fake

GOOD = {
    "id": "google",
    "name": "Google",
    "issuer": "https://accounts.google.com",
    "client_id": "1234.apps.googleusercontent.com",
    "client_secret_env": "GOOGLE_SECRET",
}


def _env(tmp_path: Path, *providers: dict, **extra: str) -> dict[str, str]:
    path = tmp_path / "providers.json"
    path.write_text(json.dumps({"providers": list(providers)}))
    return {
        "PASSGATE_OIDC_PROVIDERS": str(path),
        "PASSGATE_OIDC_RETURN_ORIGINS": "https://app.example.com",
        "GOOGLE_SECRET": "google-secret-value",
        **extra,
    }


def test_a_good_configuration_from_a_file_and_secrets_from_a_variable_or_a_file(
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "kakao-secret"
    secret_file.write_text("kakao-secret-value\n")
    kakao = {
        "id": "kakao",
        "issuer": "https://kauth.kakao.com",
        "client_id": "kakao-app",
        "client_secret_file": str(secret_file),
        "scopes": ["openid", "account_email"],
        "link_by_verified_email": True,
    }
    settings = AuthSettings.from_env(
        _env(tmp_path, GOOD, kakao, PASSGATE_ISSUER="https://api.example.com/")
    )
    google, kakao_provider = settings.oidc.providers
    assert google.client_secret == "google-secret-value" and not google.link_by_verified_email
    assert google.scopes == ("openid", "email", "profile")
    assert kakao_provider.client_secret == "kakao-secret-value"
    assert kakao_provider.name == "kakao" and kakao_provider.link_by_verified_email
    assert settings.oidc.redirect_uri(google) == "https://api.example.com/auth/oidc/google/callback"
    assert "secret-value" not in repr(settings)


def test_no_providers_is_the_default() -> None:
    assert AuthSettings.from_env({}).oidc == OidcSettings(callback_base="http://127.0.0.1:8080")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_secret": "inline"}, "client_secret_file or client_secret_env"),
        ({"client_secret_env": "NOT_SET"}, "the client secret is empty"),
        (
            {"client_secret_env": None, "client_secret_file": "/nonexistent/secret"},
            "cannot be read",
        ),
        ({"issuer": "http://idp.example.com"}, "issuer must be an https URL"),
        ({"id": "Google!"}, "id must be"),
        ({"scopes": ["email"]}, "including openid"),
        ({"algorithms": ["HS256"]}, "algorithms"),
        ({"algorithms": ["none"]}, "algorithms"),
        ({"link_by_verified_email": "yes"}, "true or false"),
    ],
)
def test_a_bad_provider_stops_the_service_naming_the_field(
    tmp_path: Path, change: dict, message: str
) -> None:
    entry = {**GOOD, **change}
    with pytest.raises(SettingsError, match=message) as caught:
        AuthSettings.from_env(_env(tmp_path, entry))
    assert "google-secret-value" not in str(caught.value)


def test_providers_need_return_origins_that_are_exact_origins(tmp_path: Path) -> None:
    env = _env(tmp_path, GOOD)
    del env["PASSGATE_OIDC_RETURN_ORIGINS"]
    with pytest.raises(SettingsError, match="PASSGATE_OIDC_RETURN_ORIGINS"):
        AuthSettings.from_env(env)
    env["PASSGATE_CORS_ORIGINS"] = "https://app.example.com"  # the gateway's list will do
    assert AuthSettings.from_env(env).oidc.return_origins == {"https://app.example.com"}
    for bad in ("*", "https://app.example.com/path"):
        with pytest.raises(SettingsError, match="exact origin"):
            AuthSettings.from_env(_env(tmp_path, GOOD, PASSGATE_OIDC_RETURN_ORIGINS=bad))
    with pytest.raises(SettingsError, match="used twice"):
        AuthSettings.from_env(_env(tmp_path, GOOD, GOOD))


async def test_start_refuses_unknown_providers_and_foreign_return_pages(
    oidc_auth, fake_config, clock
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    body = {"return_to": "http://app.test/", "binding_challenge": "A" * 43}
    assert (await client.post("/auth/oidc/nope/start", json=body)).status == 404
    for page in ("https://evil.example/", "http://app.test.evil.example/", "http://u@app.test/"):
        response = await client.post("/auth/oidc/fake/start", json={**body, "return_to": page})
        assert response.status == 400, page
    bad_binding = await client.post(
        "/auth/oidc/fake/start", json={**body, "binding_challenge": "x"}
    )
    assert bad_binding.status == 400


async def test_discovery_is_cached_and_its_issuer_must_match(
    oidc_auth, fake_config, fake_provider, clock
) -> None:
    client = await oidc_auth((fake_config(),), clock=clock)
    await tokens_with_fake(client)
    await tokens_with_fake(client)
    assert fake_provider.fetches == {"discovery": 1, "jwks": 1}
    clock.advance(3601)  # past PASSGATE_OIDC_METADATA_TTL: fetched again
    fake_provider.discovery_overrides = {"issuer": "https://someone-else.example"}
    body = {"return_to": "http://app.test/", "binding_challenge": "A" * 43}
    refused = await client.post("/auth/oidc/fake/start", json=body)
    assert refused.status == 503 and "Retry-After" in refused.headers
    fake_provider.discovery_overrides = {}
    await start_flow(client, "fake")


async def test_a_provider_without_pkce_s256_is_not_used(
    oidc_auth, fake_config, fake_provider, clock
) -> None:
    fake_provider.discovery_overrides = {"code_challenge_methods_supported": ["plain"]}
    client = await oidc_auth((fake_config(),), clock=clock)
    body = {"return_to": "http://app.test/", "binding_challenge": "A" * 43}
    assert (await client.post("/auth/oidc/fake/start", json=body)).status == 503


async def test_without_providers_the_endpoints_say_so(oidc_auth) -> None:
    client = await oidc_auth(())
    assert await (await client.get("/auth/oidc/providers")).json() == {"providers": []}
    body = {"return_to": "http://app.test/", "binding_challenge": "A" * 43}
    assert (await client.post("/auth/oidc/google/start", json=body)).status == 404
    assert (await client.get("/auth/oidc/google/callback?state=x&code=y")).status == 404


def test_display_name_from_a_provider_loses_controls_and_bidi_overrides() -> None:
    """A provider's `name` claim is cleaned to what the users service accepts, else the username."""
    assert display_name({"name": "alice\u202enimda\u2066x\u0007"}, "alice") == "alicenimdax"
    assert display_name({"name": "\u202e \u0000"}, "alice") == "alice"
    assert display_name({"name": 42}, "alice") == "alice"
