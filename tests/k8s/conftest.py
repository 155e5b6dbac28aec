"""Fixtures for the offline Kubernetes checks: render each overlay once per session."""

from __future__ import annotations

from typing import Any

import pytest
from tests.k8s.k8s_render import OVERLAY_DIRS, OVERLAYS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay, rendered: {"dev": [objects], "prod": [objects], ...}."""
    return {name: render(path) for name, path in OVERLAY_DIRS.items()}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]):
    """(name, objects) of one overlay; tests using it run once per overlay."""
    return request.param, rendered[request.param]
