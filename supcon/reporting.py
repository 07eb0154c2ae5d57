"""Plain-text tables for the command line."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any


def escape(text: Any, *, keep_newlines: bool = False) -> str:
    """``text`` with control and format characters shown as Python escapes.

    Terminal escape codes (``\\x1b[…``), carriage returns, bidirectional overrides and other
    non-printing characters in class names or paths are printed as ``\\x1b``, ``\\r``,
    ``\\u202e`` … so they cannot rewrite the terminal or hide text; printable Unicode
    (accents, CJK) is kept as it is.

    Args:
        text: Anything; converted with ``str``.
        keep_newlines: Leave ``\\n`` as a line break (multi-line messages).
    """
    out = []
    for char in str(text):
        category = unicodedata.category(char)
        hidden = category.startswith("C") or category in ("Zl", "Zp")
        out.append(repr(char)[1:-1] if hidden and not (keep_newlines and char == "\n") else char)
    return "".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:.4f}"
    return escape(value)


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Align ``rows`` under ``headers`` in columns (floats to 4 decimals)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    return "\n".join([line, rule, *body])


def metrics_table(metrics: Mapping[str, float]) -> str:
    """Two-column table of metric name and value."""
    return format_table([(k, v) for k, v in metrics.items()], ["metric", "value"])
