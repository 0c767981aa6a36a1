"""The partitions every collector shares: UTC days, from POLO_START_DATE (unset: the sample world's first day while it
is all Polo collects, else 2025-01-01)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from polo_pipelines.drilldown.periods import first_monday_from
from polo_pipelines.sources.sample import first_partition_day

# A partition set is part of the graph, so POLO_START_DATE is read when the definitions load (a reload of the
# code location picks up a new value); it is the one setting read then rather than at run time.
START_DATE = first_partition_day().isoformat()

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")


def window_days(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The run's days as [start, end_exclusive): one partition, or a whole single-run backfill range."""
    window = context.partition_time_window
    return window.start.date(), window.end.date()


# ISO weeks, Monday to Sunday, in UTC: the same weeks the delta SQL uses.
weekly_partitions = dg.WeeklyPartitionsDefinition(
    start_date=first_monday_from(dt.date.fromisoformat(START_DATE)).isoformat(), day_offset=1, timezone="UTC"
)
