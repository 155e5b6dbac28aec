"""Moved to tests/support/http.py; kept as a re-export for tests/container until it imports
tests.support.http itself."""

from tests.support.http import PASSWORD, assert_problem, bearer, register_and_login

__all__ = ["PASSWORD", "assert_problem", "bearer", "register_and_login"]
