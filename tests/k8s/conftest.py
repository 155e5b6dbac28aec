"""Fixtures for the offline Kubernetes checks: render each overlay once per session."""

from __future__ import annotations

from typing import Any

import pytest
from tests.k8s.k8s_render import K8S, OVERLAYS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay, rendered: {"dev": [objects], "prod": [objects]}."""
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]):
    """(name, objects) of one overlay; tests using it run once per overlay."""
    return request.param, rendered[request.param]
