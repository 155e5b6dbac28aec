"""The scope policy: every scope a token can carry and the roles that grant them.

One file an operator edits (common/scopes.yaml, or PASSGATE_SCOPES_FILE), read at start by
auth (what it issues) and by the gateway (what a route may require), so the two cannot
disagree. The file is small, so it is checked here by hand, every problem listed at once
with its place, rather than through a schema.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from common.provisioning import PROVISIONING_SCOPE
from common.settings import Env, SettingsError, env_str

DEFAULT_SCOPES_FILE = Path(__file__).with_name("scopes.yaml")
SCOPES_FILE_VARIABLE = "PASSGATE_SCOPES_FILE"
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# Roles are stored in auth's accounts.role column, String(16).
_ROLE_NAME = re.compile(r"[a-z0-9_-]{1,16}")
_MAX_SCOPE_LENGTH = 64
_KEYS = ("scopes", "roles", "default_role")


class ScopePolicyError(SettingsError):
    """The scopes file is unreadable or invalid; the message lists every problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True, slots=True)
class ScopePolicy:
    source: str
    descriptions: Mapping[str, str]  # every issuable scope -> what it lets a token do
    roles: Mapping[str, frozenset[str]]
    default_role: str

    @property
    def issuable(self) -> frozenset[str]:
        return frozenset(self.descriptions)

    def role_scopes(self, role: str) -> frozenset[str]:
        """What `role` grants; nothing for a role the file no longer lists."""
        return self.roles.get(role, frozenset())


def load_scope_policy(path: Path) -> ScopePolicy:
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScopePolicyError(source, [f"cannot read: {exc.strerror}"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ScopePolicyError(source, [f"not valid YAML: {exc}"]) from None
    return parse_scope_policy(document, source=source)


def scope_policy_from_env(env: Env) -> ScopePolicy:
    return load_scope_policy(Path(env_str(env, SCOPES_FILE_VARIABLE, str(DEFAULT_SCOPES_FILE))))


@cache
def default_scope_policy() -> ScopePolicy:
    """The packaged file's policy (tests, tools, and settings built without an environment)."""
    return load_scope_policy(DEFAULT_SCOPES_FILE)


def parse_scope_policy(document: Any, *, source: str) -> ScopePolicy:
    if not isinstance(document, dict):
        raise ScopePolicyError(source, [f"must be a mapping with keys {', '.join(_KEYS)}"])
    problems = [f"{key}: unknown key" for key in document if key not in _KEYS]
    descriptions = _scopes(document.get("scopes"), problems)
    roles = _roles(document.get("roles"), frozenset(descriptions), problems)
    default_role = document.get("default_role")
    if not isinstance(default_role, str) or default_role not in roles:
        problems.append(f"default_role: {default_role!r} is not one of the roles")
    if problems:
        raise ScopePolicyError(source, problems)
    return ScopePolicy(source, descriptions, roles, default_role)


def _scopes(value: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        problems.append("scopes: must map each scope to a description, at least one")
        return {}
    descriptions = {}
    for scope, description in value.items():
        if not isinstance(scope, str) or not SCOPE_TOKEN.fullmatch(scope):
            problems.append(f"scopes: {scope!r} is not an RFC 6749 scope token")
        elif len(scope) > _MAX_SCOPE_LENGTH:
            problems.append(f"scopes: {scope!r} is longer than {_MAX_SCOPE_LENGTH} characters")
        elif scope == PROVISIONING_SCOPE:
            problems.append(f"scopes: {scope} is auth's own and never in a token")
        elif not isinstance(description, str) or not description.strip():
            problems.append(f"scopes.{scope}: needs a description")
        else:
            descriptions[scope] = description.strip()
    return descriptions


def _roles(value: Any, issuable: frozenset[str], problems: list[str]) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict) or not value:
        problems.append("roles: must map each role to its list of scopes, at least one")
        return {}
    roles = {}
    for role, granted in value.items():
        if not isinstance(role, str) or not _ROLE_NAME.fullmatch(role):
            problems.append(f"roles: {role!r} must be 1-16 of a-z 0-9 _ -")
        elif not isinstance(granted, list) or not all(isinstance(s, str) for s in granted):
            problems.append(f"roles.{role}: must be a list of scopes")
        elif unknown := sorted(set(granted) - issuable):
            problems.append(f"roles.{role}: {', '.join(unknown)} not under scopes")
        else:
            roles[role] = frozenset(granted)
    return roles
