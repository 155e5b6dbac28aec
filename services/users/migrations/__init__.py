"""Alembic revisions of the users schema (a package so that it ships with the distribution)."""
