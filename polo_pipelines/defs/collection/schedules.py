"""Every morning, re-collect the last days: billing data lands late and is restated (POLO_LOOKBACK_DAYS, default 3)."""

import os

import dagster as dg

from polo_pipelines.defs.collection.jobs import daily_cost_collection
from polo_pipelines.events import lookback_days
from polo_pipelines.partitions import daily_partitions

LOOKBACK_DAYS = int(os.environ.get("POLO_LOOKBACK_DAYS", "3"))


@dg.schedule(cron_schedule="0 6 * * *", job=daily_cost_collection, execution_timezone="UTC")
def daily_cost_collection_schedule(context: dg.ScheduleEvaluationContext):
    """One run per day T-1..T-N; the run key makes each (schedule day, partition) run once."""
    today = context.scheduled_execution_time.date()
    valid = set(daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time))
    for day in lookback_days(today, LOOKBACK_DAYS):
        key = day.isoformat()
        if key in valid:
            yield dg.RunRequest(run_key=f"{today.isoformat()}:{key}", partition_key=key)
