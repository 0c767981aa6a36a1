"""Text tables and money as the terminal shows them."""

from __future__ import annotations

import pandas as pd


def text_table(frame: pd.DataFrame, money: tuple[str, ...] = (), signed: tuple[str, ...] = ()) -> str:
    """A frame as an aligned text table; money columns as $1,234.56, signed ones as +$1,234.56, a missing amount blank."""
    if frame.empty:
        return "(no rows)"
    cells = [[str(c) for c in frame.columns]]
    for row in frame.itertuples(index=False):
        cells.append([("" if pd.isna(v) else usd(v, c in signed)) if c in money else str(v) for c, v in zip(frame.columns, row)])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    numeric = [c in money or pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(row, widths, numeric)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def usd(value: float, signed: bool = False) -> str:
    sign = "-" if round(value, 2) < 0 else ("+" if signed and round(value, 2) > 0 else "")
    return f"{sign}${abs(value):,.2f}"
