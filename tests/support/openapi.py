"""Checks every service's published OpenAPI document must pass."""

from __future__ import annotations

from pathlib import Path

from jsonschema import Draft202012Validator

from common.validation import OpenApiDocument


def load_sound_document(path: Path) -> OpenApiDocument:
    """The document at `path`, after checking it is OpenAPI 3.1, every component schema is
    valid JSON Schema, and every $ref resolves."""
    document = OpenApiDocument.load(path)
    assert document.document["openapi"].startswith("3.1")
    for name, schema in document.document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        document.validator(name)  # every $ref resolves
    return document
