"""The README stays true: every setting the code reads is documented there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("common", "gateway", "services")


def test_every_environment_variable_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    read = set()
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            read |= set(re.findall(r"PASSGATE_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    read.discard("PASSGATE_UPSTREAM")  # documented as PASSGATE_UPSTREAM_<NAME>
    undocumented = sorted(name for name in read if f"`{name}" not in readme)
    assert not undocumented, f"settings missing from README.md: {undocumented}"
