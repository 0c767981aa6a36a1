"""Every morning, re-collect the last days: billing data lands late and is restated (POLO_LOOKBACK_DAYS, default 3)."""

import dagster as dg

from polo_pipelines.defs.collection.jobs import daily_cost_collection
from polo_pipelines.defs.partitions import daily_partitions
from polo_pipelines.settings import lookback
from polo_pipelines.store.events import lookback_days


@dg.schedule(
    cron_schedule="0 6 * * *", job=daily_cost_collection, execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING
)
def daily_cost_collection_schedule(context: dg.ScheduleEvaluationContext):
    """One run for the days T-N..T-1 (a single-run range: each source is read once); one run per schedule day."""
    today = context.scheduled_execution_time.date()
    valid = set(daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time))
    keys = [d.isoformat() for d in lookback_days(today, lookback()) if d.isoformat() in valid]
    if not keys:
        return dg.SkipReason(f"no daily partition in the lookback of {today}")
    return dg.RunRequest(
        run_key=f"{today.isoformat()}:{keys[0]}..{keys[-1]}",
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
