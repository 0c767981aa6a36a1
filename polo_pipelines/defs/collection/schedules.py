"""Every morning, re-collect the last days: billing data lands late and is restated (POLO_LOOKBACK_DAYS, default 3).
Once a month, when the previous month's bill is final (POLO_MONTH_CLOSE_DAY, default the 5th), re-collect that month."""

import datetime as dt

import dagster as dg

from polo_pipelines.defs.collection.jobs import daily_cost_collection
from polo_pipelines.defs.partitions import daily_partitions
from polo_pipelines.settings import lookback, month_close_day
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


@dg.schedule(
    cron_schedule="0 7 * * *", job=daily_cost_collection, execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING
)
def month_close_collection_schedule(context: dg.ScheduleEvaluationContext):
    """On POLO_MONTH_CLOSE_DAY (read when it ticks), one run for every day of the previous month: a month's
    reservation fees are spread over all its days, and their unused part is only known once the month closes."""
    today = context.scheduled_execution_time.date()
    if today.day != month_close_day():
        return dg.SkipReason(f"the previous month is collected again on day {month_close_day()} of the month")
    last = today.replace(day=1) - dt.timedelta(days=1)
    first = last.replace(day=1)
    valid = daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time)
    keys = [k for k in valid if first.isoformat() <= k <= last.isoformat()]
    if not keys:
        return dg.SkipReason(f"no daily partition in {first:%Y-%m}")
    return dg.RunRequest(
        run_key=f"close:{first:%Y-%m}",
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
