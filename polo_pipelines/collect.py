"""How a collector asset runs: read the source outside the store lock, replace the window's days, report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import dagster as dg
import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.events import DayLoad, day_range, replace_days, window_label
from polo_pipelines.storage import Store

COLLECTOR_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass
class Collected:
    collector: str
    source: str
    events: pd.DataFrame
    sources: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def read_or_fail(read: Callable[[], Collected]) -> Collected:
    """Bad input fails the step without retries (it would fail the same way again), naming source, field and partition."""
    try:
        return read()
    except PoloInputError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"source": exc.source, "field": exc.field or "", "partition": exc.partition or ""},
            allow_retries=False,
        ) from exc


def write(store: Store, collected: Collected, start: dt.date, end: dt.date, run_id: str) -> list[DayLoad]:
    try:
        return replace_days(
            store,
            collected.events,
            collector=collected.collector,
            days=day_range(start, end),
            source=collected.source,
            sources=collected.sources,
            run_id=run_id,
        )
    except PoloInputError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def markdown_table(frame: pd.DataFrame, money: tuple[str, ...] = ()) -> str:
    if frame.empty:
        return "_no rows_"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [f"${v:,.2f}" if c in money else str(v) for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def result(collected: Collected, loads: list[DayLoad], start: dt.date, end: dt.date) -> dg.MaterializeResult:
    events = collected.events
    top = (
        events.groupby(["aws_account_id", "service"] if collected.collector == "cost_aws" else ["provider", "service"])["value"]
        .sum()
        .sort_values(ascending=False)
        .head(10)
        .reset_index()
        .rename(columns={"value": "cost"})
    )
    by_day = pd.DataFrame(
        {"day": [str(l.day) for l in loads], "events": [l.row_count for l in loads], "cost": [l.value_total for l in loads]}
    )
    metadata = {
        "dagster/row_count": int(sum(l.row_count for l in loads)),
        "window": window_label(start, end),
        "cost_usd": dg.MetadataValue.float(round(float(events["value"].sum()), 6)),
        "billed_usd": dg.MetadataValue.float(round(float(events["billed_cost"].sum()), 6)),
        "sources": dg.MetadataValue.text("\n".join(collected.sources) or "-"),
        "top_costs": dg.MetadataValue.md(markdown_table(top, money=("cost",))),
        "days": dg.MetadataValue.md(markdown_table(by_day, money=("cost",))),
        **{k: int(v) for k, v in collected.counts.items()},
    }
    return dg.MaterializeResult(metadata=metadata)
