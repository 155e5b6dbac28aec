"""External OpenID Connect providers auth signs people in with: read and checked at start.

PASSGATE_OIDC_PROVIDERS names a YAML (or JSON, which is YAML too) file:

    providers:
      - id: google                        # [a-z0-9-]{1,32}: in URLs and metrics labels
        name: Google                      # what the "sign in with" button says
        issuer: https://accounts.google.com
        client_id: 1234.apps.googleusercontent.com
        client_secret_file: /run/secrets/google-client-secret   # or client_secret_env: NAME
        scopes: [openid, email, profile]  # default; must include openid
        link_by_verified_email: false     # default; see services/auth/README.md
        algorithms: [RS256]               # optional: ID-token algorithms accepted

Secrets never sit in the file itself: `client_secret_file` names a file (a mounted Secret),
`client_secret_env` an environment variable. Every problem is reported at start, naming the
file, the provider and the field, never a secret.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from common.settings import Env, SettingsError, env_int, env_list, env_str

# Asymmetric algorithms only: HS256 would make the client secret a signing key, and "none"
# is never acceptable (OpenID Connect Core 3.1.3.7).
SUPPORTED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_SCOPES = ("openid", "email", "profile")
_PROVIDER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_PROVIDER_KEYS = {
    "id",
    "name",
    "issuer",
    "client_id",
    "client_secret_file",
    "client_secret_env",
    "scopes",
    "link_by_verified_email",
    "algorithms",
}
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


@dataclasses.dataclass(frozen=True, slots=True)
class OidcProvider:
    id: str
    name: str
    issuer: str
    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    link_by_verified_email: bool = False
    algorithms: tuple[str, ...] = SUPPORTED_ALGORITHMS


@dataclasses.dataclass(frozen=True, slots=True)
class OidcSettings:
    providers: tuple[OidcProvider, ...] = ()
    # The public base URL the provider redirects browsers back to (the gateway's), so the
    # redirect URI to register is {callback_base}/auth/oidc/{id}/callback.
    callback_base: str = "http://127.0.0.1:8080"
    # Pages that may start a sign-in and receive its result: exact origins.
    return_origins: frozenset[str] = frozenset()
    flow_ttl: int = 600  # seconds from start to callback (the provider's login and consent)
    handoff_ttl: int = 60  # seconds from callback to the page's exchange
    metadata_ttl: int = 3600  # discovery document and JWKS cache
    http_timeout: float = 10.0
    leeway: int = 60  # clock skew allowed on ID-token times

    def provider(self, provider_id: str) -> OidcProvider | None:
        return next((p for p in self.providers if p.id == provider_id), None)

    def redirect_uri(self, provider: OidcProvider) -> str:
        return f"{self.callback_base}/auth/oidc/{provider.id}/callback"

    @classmethod
    def from_env(cls, env: Env, *, issuer: str) -> OidcSettings:
        path = env_str(env, "PASSGATE_OIDC_PROVIDERS", "")
        providers = load_providers(Path(path), env) if path else ()
        origins = env_list(env, "PASSGATE_OIDC_RETURN_ORIGINS") or env_list(
            env, "PASSGATE_CORS_ORIGINS"
        )
        for origin in origins:
            if origin == "*" or normalize_origin(origin) != origin:
                raise SettingsError(
                    f"PASSGATE_OIDC_RETURN_ORIGINS: {origin!r} must be an exact origin, "
                    "scheme://host[:port] without a path"
                )
        if providers and not origins:
            raise SettingsError(
                "PASSGATE_OIDC_RETURN_ORIGINS (or PASSGATE_CORS_ORIGINS) must list the frontend "
                "origins that may receive sign-in results when PASSGATE_OIDC_PROVIDERS is set"
            )
        callback_base = env_str(env, "PASSGATE_OIDC_CALLBACK_BASE", issuer).rstrip("/")
        # Checked only when a provider will redirect to it: the default is the issuer, and a
        # deployment without external sign-in (the dev overlay's http issuer) must still start.
        if providers and not acceptable_url(callback_base):
            raise SettingsError(
                "PASSGATE_OIDC_CALLBACK_BASE must be an https URL (http only on loopback)"
            )
        return cls(
            providers=providers,
            callback_base=callback_base,
            return_origins=frozenset(origins),
            flow_ttl=env_int(env, "PASSGATE_OIDC_FLOW_TTL", 600, minimum=30, maximum=3600),
            handoff_ttl=env_int(env, "PASSGATE_OIDC_HANDOFF_TTL", 60, minimum=5, maximum=600),
            metadata_ttl=env_int(env, "PASSGATE_OIDC_METADATA_TTL", 3600, minimum=0, maximum=86400),
            leeway=env_int(env, "PASSGATE_OIDC_LEEWAY", 60, minimum=0, maximum=300),
        )


def normalize_origin(url: str) -> str | None:
    """scheme://host[:port] of an http(s) URL (default ports dropped), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def acceptable_url(url: str) -> bool:
    """https, or http on a loopback host (local runs and tests): provider traffic carries
    codes and tokens, so plain http elsewhere is a configuration error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))


def load_providers(path: Path, env: Env) -> tuple[OidcProvider, ...]:
    where = f"PASSGATE_OIDC_PROVIDERS ({path})"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(f"{where} cannot be read: {error.strerror}") from None
    except yaml.YAMLError:
        raise SettingsError(f"{where} is not valid YAML or JSON") from None
    entries = document.get("providers") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SettingsError(f'{where} must hold {{"providers": [...]}} with at least one entry')
    problems: list[str] = []
    providers: list[OidcProvider] = []
    for index, entry in enumerate(entries):
        provider = _provider(entry, f"providers[{index}]", env, problems)
        if provider is not None:
            if any(p.id == provider.id for p in providers):
                problems.append(f"providers[{index}]: id {provider.id!r} is used twice")
            providers.append(provider)
    if problems:
        raise SettingsError(f"{where}: " + "; ".join(problems))
    return tuple(providers)


def _provider(entry: Any, where: str, env: Env, problems: list[str]) -> OidcProvider | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    before = len(problems)
    unknown = sorted(str(key) for key in entry if key not in _PROVIDER_KEYS)
    if unknown:
        hint = (
            " (secrets go in client_secret_file or client_secret_env)"
            if ("client_secret" in unknown)
            else ""
        )
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}{hint}")
    provider_id = entry.get("id")
    if not isinstance(provider_id, str) or not _PROVIDER_ID.match(provider_id):
        problems.append(f"{where}: id must be 1-32 of [a-z0-9-]")
    else:
        where = f"{where} ({provider_id})"
    name = entry.get("name", provider_id)
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        problems.append(f"{where}: name must be 1-64 characters")
    issuer = entry.get("issuer")
    if not isinstance(issuer, str) or not acceptable_url(issuer):
        problems.append(f"{where}: issuer must be an https URL (http only on loopback)")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        problems.append(f"{where}: client_id is required")
    secret = _secret(entry, where, env, problems)
    scopes = entry.get("scopes", list(DEFAULT_SCOPES))
    if (
        not isinstance(scopes, list)
        or not all(isinstance(s, str) and _SCOPE_TOKEN.match(s) for s in scopes)
        or "openid" not in scopes
    ):
        problems.append(f"{where}: scopes must be a list of scope tokens including openid")
    link = entry.get("link_by_verified_email", False)
    if not isinstance(link, bool):
        problems.append(f"{where}: link_by_verified_email must be true or false")
    algorithms = entry.get("algorithms", list(SUPPORTED_ALGORITHMS))
    if (
        not isinstance(algorithms, list)
        or not algorithms
        or not all(a in SUPPORTED_ALGORITHMS for a in algorithms)
    ):
        problems.append(f"{where}: algorithms must be a non-empty list of {SUPPORTED_ALGORITHMS}")
    if len(problems) > before:
        return None
    return OidcProvider(
        id=provider_id,
        name=name,
        issuer=issuer,  # kept exactly: it must equal the discovery document's
        client_id=client_id,
        client_secret=secret or "",
        scopes=tuple(dict.fromkeys(scopes)),
        link_by_verified_email=link,
        algorithms=tuple(algorithms),
    )


def _secret(entry: dict[str, Any], where: str, env: Env, problems: list[str]) -> str | None:
    file_name, variable = entry.get("client_secret_file"), entry.get("client_secret_env")
    if (file_name is None) == (variable is None):
        problems.append(f"{where}: exactly one of client_secret_file, client_secret_env")
        return None
    if file_name is not None:
        if not isinstance(file_name, str):
            problems.append(f"{where}: client_secret_file must be a path")
            return None
        try:
            secret = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as error:
            problems.append(f"{where}: client_secret_file cannot be read: {error.strerror}")
            return None
    else:
        if not isinstance(variable, str) or not variable:
            problems.append(f"{where}: client_secret_env must name a variable")
            return None
        secret = env.get(variable, "").strip()
    if not secret:
        problems.append(f"{where}: the client secret is empty")
        return None
    return secret
