"""The scopes file: the packaged one loads; a broken one is refused with every problem named,
whatever its shape, and never with anything but ScopePolicyError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from common.provisioning import PROVISIONING_SCOPE
from common.scopes import (
    DEFAULT_SCOPES_FILE,
    ScopePolicyError,
    default_scope_policy,
    load_scope_policy,
    parse_scope_policy,
    scope_policy_from_env,
)

GOOD: dict[str, Any] = {
    "scopes": {"notes:read": "read notes", "admin": "everything"},
    "roles": {"user": ["notes:read"], "admin": ["notes:read", "admin"]},
    "default_role": "user",
}


def test_the_packaged_file_grants_users_their_scopes_and_admins_admin() -> None:
    policy = default_scope_policy()
    assert policy.role_scopes(policy.default_role) == {
        "users:read", "users:write", "orders:read", "orders:write"
    }
    assert policy.role_scopes("admin") == policy.issuable
    assert PROVISIONING_SCOPE not in policy.issuable
    assert policy.role_scopes("no-such-role") == frozenset()


def test_the_environment_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scopes.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    policy = scope_policy_from_env({"PASSGATE_SCOPES_FILE": str(path)})
    assert policy.issuable == {"notes:read", "admin"} and policy.source == str(path)
    assert scope_policy_from_env({}).source == str(DEFAULT_SCOPES_FILE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scopes": {"a b": "x"}}, "'a b' is not an RFC 6749 scope token"),
        ({"scopes": {'quote"': "x"}}, "is not an RFC 6749 scope token"),
        ({"scopes": {"x" * 65: "x"}}, "longer than 64"),
        ({"scopes": {PROVISIONING_SCOPE: "x"}}, "auth's own and never in a token"),
        ({"scopes": {"notes:read": ""}}, "scopes.notes:read: needs a description"),
        ({"scopes": []}, "scopes: must map each scope"),
        ({"roles": {"user": ["notes:write"]}}, "roles.user: notes:write not under scopes"),
        ({"roles": {"User": []}}, "'User' must be 1-16"),
        ({"roles": {"a" * 17: []}}, "must be 1-16"),
        ({"roles": {"user": "notes:read"}}, "roles.user: must be a list of scopes"),
        ({"default_role": "guest"}, "default_role: 'guest' is not one of the roles"),
        ({"default_role": ["user"]}, "default_role"),
        ({"extra": 1}, "extra: unknown key"),
    ],
)
def test_each_problem_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScopePolicyError) as refused:
        parse_scope_policy({**GOOD, **change}, source="scopes.yaml")
    assert any(message in problem for problem in refused.value.problems), refused.value.problems
    assert str(refused.value).startswith("scopes.yaml: ")


def test_every_problem_is_listed_at_once() -> None:
    document = {"scopes": {"bad scope": "x"}, "roles": {"user": ["nope"]}, "default_role": "x"}
    with pytest.raises(ScopePolicyError) as refused:
        parse_scope_policy(document, source="s")
    assert len(refused.value.problems) == 3


def test_unreadable_and_non_yaml_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScopePolicyError, match="cannot read"):
        load_scope_policy(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(b"scopes: [\n")
    with pytest.raises(ScopePolicyError, match="not valid YAML"):
        load_scope_policy(broken)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScopePolicyError, match="not valid YAML"):
        load_scope_policy(binary)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    document=st.one_of(
        _values,
        st.fixed_dictionaries(
            {}, optional={"scopes": _values, "roles": _values, "default_role": _values}
        ),
    )
)
def test_any_document_is_a_policy_or_a_listed_refusal(document: Any) -> None:
    try:
        policy = parse_scope_policy(document, source="s")
    except ScopePolicyError as refused:
        assert refused.problems and all(isinstance(p, str) for p in refused.problems)
    else:
        assert policy.default_role in policy.roles
        assert all(scopes <= policy.issuable for scopes in policy.roles.values())
