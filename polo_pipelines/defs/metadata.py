"""Metadata as a person reads it in the Dagster UI: money as money, tables as tables (shown inline, where markdown
hides behind a button), and small charts where a glance says more than figures."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from polo_pipelines.cli.text import usd

BAR = "█"
BAR_WIDTH = 16


def money(value: float, signed: bool = False) -> dg.MetadataValue:
    """$28,253.49, as the CLI writes it (-$21.95, never $-21.95)."""
    return dg.MetadataValue.text(usd(float(value), signed))


def plotted(value: float) -> dg.MetadataValue:
    """A dollar figure the Plots view can draw: a float, rounded to the cent."""
    return dg.MetadataValue.float(round(float(value), 2))


def _cell(value, column: str, money_cols: tuple[str, ...], signed: tuple[str, ...]):
    missing = value is None or value is pd.NaT or (isinstance(value, (float, np.floating)) and np.isnan(value))
    if missing:
        return ""
    if column in money_cols or column in signed:
        return usd(float(value), column in signed)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return f"{float(value):,.4g}" if abs(value) < 1000 else f"{float(value):,.2f}"
    return str(value)


def table(frame: pd.DataFrame, money_cols: tuple[str, ...] = (), signed: tuple[str, ...] = ()) -> dg.MetadataValue:
    """A frame as a table the UI shows inline; money columns as $1,234.56, signed ones as +$1,234.56."""
    columns = []
    for name in frame.columns:
        kind = "string"
        if name not in money_cols and name not in signed:
            if pd.api.types.is_bool_dtype(frame[name]):
                kind = "bool"
            elif pd.api.types.is_integer_dtype(frame[name]):
                kind = "int"
        columns.append(dg.TableColumn(str(name), kind))
    records = [
        dg.TableRecord({str(c): _cell(v, c, money_cols, signed) for c, v in zip(frame.columns, row)})
        for row in frame.itertuples(index=False)
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def bars(labels: list[str], series: dict[str, list[float]]) -> dg.MetadataValue:
    """A small bar chart in markdown: one line per label and series, bars scaled to the largest value."""
    top = max([abs(v) for values in series.values() for v in values] or [0.0])
    name_width = max(len(n) for n in series)
    label_width = max([len(label) for label in labels] or [0])
    amount_width = max([len(usd(v)) for values in series.values() for v in values] or [0])
    lines = []
    for i, label in enumerate(labels):
        for n, (name, values) in enumerate(series.items()):
            value = values[i]
            width = round(abs(value) / top * BAR_WIDTH) if top > 0 else 0
            head = label.ljust(label_width) if n == 0 else " " * label_width
            lines.append(f"{head}  {name.ljust(name_width)}  {usd(value).rjust(amount_width)}  {BAR * width}")
    return dg.MetadataValue.md("```\n" + "\n".join(lines) + "\n```")
