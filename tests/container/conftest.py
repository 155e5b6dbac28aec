"""Report the container test's figures (image build time and size, start time) at the end of
every run that built the image, where CI's log shows them."""

from __future__ import annotations

import pytest

from tests.container.stack import FIGURES


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = []


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    for line in config.stash[FIGURES]:
        terminalreporter.write_line(line)
