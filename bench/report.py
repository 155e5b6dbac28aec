"""The results: a markdown table (printed and written) and the raw figures as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Target:
    """One of the issue's targets with what was measured against it. A target with no
    limit is one the issue asks to be measured and reported only; `stretch` is the issue's
    further goal beyond the limit."""

    name: str
    measured: float | None
    limit: float | None
    higher_is_better: bool
    unit: str = ""
    note: str = ""
    stretch: float | None = None

    def _meets(self, limit: float) -> bool:
        assert self.measured is not None
        return self.measured >= limit if self.higher_is_better else self.measured <= limit

    @property
    def met(self) -> bool | None:
        if self.measured is None or self.limit is None:
            return None
        return self._meets(self.limit)

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        if self.limit is None:
            return "reported"
        if not self.met:
            return "NOT met"
        if self.stretch is not None:
            return "met, stretch met" if self._meets(self.stretch) else "met, stretch not met"
        return "met"

    def target_text(self) -> str:
        if self.limit is None:
            return "measure and report"
        sign = "≥" if self.higher_is_better else "≤"
        text = f"{sign} {fmt(self.limit)}{self.unit}"
        return text + (f" (stretch {sign} {fmt(self.stretch)}{self.unit})" if self.stretch is not None else "")

    def measured_text(self) -> str:
        return "n/a" if self.measured is None else f"{fmt(self.measured)}{self.unit}"


def fmt(value: Any) -> str:
    """Numbers to a readable precision; anything else as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (abs(value) >= 100 and float(value).is_integer()):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are formatted with fmt() and pipes escaped."""
    cells = [[fmt(cell).replace("|", "\\|") for cell in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the table has {len(headers)} columns")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def targets_table(targets: Sequence[Target]) -> str:
    return markdown_table(
        ["target (issue 14)", "measured", "target", "verdict", "how"],
        [(t.name, t.measured_text(), t.target_text(), t.verdict, t.note) for t in targets],
    )


def write_results(directory: Path, stamp: str, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    md_path = directory / f"{stamp}.md"
    json_path = directory / f"{stamp}.json"
    md_path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return md_path, json_path
