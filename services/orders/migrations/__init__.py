"""Alembic revisions of the orders schema (a package so that it ships with the distribution)."""
