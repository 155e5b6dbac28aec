"""The auth service's tables (SQLAlchemy Core), shared by the sub-packages' repositories.

Each sub-package owns the SQL over its own tables (accounts/repository.py,
accounts/throttle_repository.py, tokens/families.py, tokens/clients.py,
external/repository.py); the definitions live here once because the migrations mirror
them and the foreign keys tie them to `accounts`. Portable to SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

from common.timestamps import UtcDateTime

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("password_changed_at", UtcDateTime(), nullable=False),
)

refresh_families = sa.Table(
    "refresh_families",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(36), sa.ForeignKey("refresh_families.id"), nullable=False),
    sa.Column("issued_at", UtcDateTime(), nullable=False),
    sa.Column("idle_expires_at", UtcDateTime(), nullable=False),
    sa.Column("spent_at", UtcDateTime(), nullable=True),
)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # A resource server: may call the introspection endpoint (RFC 7662).
    sa.Column("may_introspect", sa.Boolean, nullable=False, server_default=sa.false()),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_started_at", UtcDateTime(), nullable=False),
    sa.Column("locked_until", UtcDateTime(), nullable=True),
)

known_sign_in_addresses = sa.Table(
    "known_sign_in_addresses",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

external_identities = sa.Table(
    "external_identities",
    metadata,
    sa.Column("issuer", sa.String(255), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("provider_id", sa.String(32), nullable=False),
    sa.Column("verified_email", sa.String(320), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_login_at", UtcDateTime(), nullable=True),
)

oidc_flows = sa.Table(
    "oidc_flows",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("provider_id", sa.String(32), nullable=False),
    sa.Column("nonce", sa.String(128), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    sa.Column("return_to", sa.Text, nullable=False),
    sa.Column("binding_hash", sa.String(64), nullable=False),
    sa.Column("link_account_id", sa.String(36), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

oidc_handoffs = sa.Table(
    "oidc_handoffs",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("binding_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)
