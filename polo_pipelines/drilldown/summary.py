"""Plain queries for the people reading the results: the two-week cost summary and the store's status."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from polo_pipelines.store.storage import Store


def last_complete_weeks(today: dt.date, weeks: int = 2) -> list[tuple[dt.date, dt.date]]:
    """The last ``weeks`` complete ISO weeks (Monday start) before ``today``, oldest first, as [start, end)."""
    monday = today - dt.timedelta(days=today.weekday())
    return [(monday - dt.timedelta(days=7 * n), monday - dt.timedelta(days=7 * (n - 1))) for n in range(weeks, 0, -1)]


def two_week_costs(store: Store, today: dt.date, by: str) -> pd.DataFrame:
    """Cost per ``by`` ('account' or 'service') in the last two complete ISO weeks, with the change between them."""
    (a0, a1), (b0, b1) = last_complete_weeks(today, 2)
    key = {"account": "if(aws_account_id != '', aws_account_id, provider)", "service": "service"}[by]
    frame = store.query_df(
        f"""
        SELECT {key} AS {by},
               sumIf(value, event_time >= {{a0:Date}} AND event_time < {{a1:Date}}) AS previous_week,
               sumIf(value, event_time >= {{b0:Date}} AND event_time < {{b1:Date}}) AS last_week
        FROM polo.resource_events
        WHERE event_type = 'cost' AND event_time >= {{a0:Date}} AND event_time < {{b1:Date}}
        GROUP BY {by}
        ORDER BY last_week DESC, {by}
        """,
        {"a0": a0, "a1": a1, "b0": b0, "b1": b1},
    )
    frame["change"] = frame["last_week"] - frame["previous_week"]
    return frame


def status(store: Store) -> pd.DataFrame:
    """Per collector: days loaded, first and last day, events and cost held."""
    return store.query_df(
        """
        SELECT collector, uniqExact(toDate(event_time)) AS days, min(toDate(event_time)) AS first_day,
               max(toDate(event_time)) AS last_day, count() AS events, round(sum(value), 2) AS cost_usd
        FROM polo.resource_events
        GROUP BY collector ORDER BY collector
        """
    )


def text_table(frame: pd.DataFrame, money: tuple[str, ...] = (), signed: tuple[str, ...] = ()) -> str:
    """A frame as an aligned text table; money columns as $1,234.56, signed ones as +$1,234.56."""
    if frame.empty:
        return "(no rows)"
    cells = [[str(c) for c in frame.columns]]
    for row in frame.itertuples(index=False):
        cells.append([usd(v, c in signed) if c in money else str(v) for c, v in zip(frame.columns, row)])
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
