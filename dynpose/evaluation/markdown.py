"""Markdown output shared by every report: tables, documents with their plots, the machine line.

A leaf module (standard library only), so any presenter can use it without importing a driver.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """Where and when a figure was measured, for the head of every benchmark report."""
    now = dt.datetime.now(dt.timezone.utc)
    return f"{platform.machine()} {os.cpu_count()} CPU(s), Python {platform.python_version()}, {now:%Y-%m-%d %H:%M} UTC"


def write_markdown_with_plots(folder, name: str, markdown: str, plots: dict[str, bytes]) -> Path:
    """A markdown document and the PNGs it links to, side by side in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in plots.items():
        (folder / fname).write_bytes(data)
    path = folder / name
    path.write_text(markdown)
    return path


def write_table_report(folder: Path, title: str, rows: list[dict], notes: str = "") -> Path:
    """``report.md`` in ``folder``: a title, the machine line, one table and notes."""
    return write_markdown_with_plots(
        folder, "report.md", f"# {title}\n\n{machine_line()}\n\n{markdown_table(rows)}\n\n{notes}\n", {}
    )
