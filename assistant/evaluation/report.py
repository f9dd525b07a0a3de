"""Tables for the terminal and for Markdown, shared by the evaluation and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fmt(value: object, digits: int | None = None) -> str:
    """A table cell: thousands grouped; floats to ``digits`` places (by default 3, or 1 from 10 up).

    >>> [fmt(None), fmt(1234567), fmt(0.12345), fmt(0.12345, 2), fmt(25.04), fmt(2500.0), fmt(True)]
    ['—', '1,234,567', '0.123', '0.12', '25.0', '2,500', 'yes']
    """
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        size = abs(float(value))
        if size >= 1000:
            return f"{value:,.0f}"
        if digits is None:
            digits = 1 if size >= 10 else 3
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool = False, digits: int | None = None) -> str:
    """Aligned columns (numbers right, the first column left), or a Markdown table.

    >>> print(table(["", "n"], [["all", 12], ["en", 3]]))
          n
    ---  --
    all  12
    en    3
    """
    cells = [[fmt(c, digits) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if not i else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) if not i else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in cells]
    return "\n".join(lines)
