"""Run the weekly deltas once a week's cost partitions are in, and again when any of them is re-collected."""

import datetime as dt

import dagster as dg

from polo_pipelines.defs.collection.jobs import COST_COLLECTOR_ASSETS
from polo_pipelines.defs.delta.jobs import weekly_cost_deltas
from polo_pipelines.drilldown import weekly
from polo_pipelines.drilldown.periods import last_complete_week, week_days


def weekly_request(instance: dg.DagsterInstance, today: dt.date) -> dg.RunRequest | dg.SkipReason:
    """A run for the last complete ISO week once every active collector holds its seven days.

    The run key carries the newest materialization among those days, so a restated day
    (the daily lookback re-collects Saturday and Sunday on Monday) computes the week again.
    """
    week = last_complete_week(today)
    days = [d.isoformat() for d in week_days(week)]
    materialized = {name: set(instance.get_materialized_partitions(dg.AssetKey(name))) for name in COST_COLLECTOR_ASSETS}
    if not weekly.week_ready(materialized, week):
        return dg.SkipReason(f"week {week}: not every collector has all of {days[0]}..{days[-1]} yet")
    newest = 0
    for name, partitions in materialized.items():
        if partitions:
            records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=days), limit=1)
            newest = max([newest, *(r.storage_id for r in records.records)])
    rollup = instance.fetch_materializations(dg.AssetKey("cost_node_daily"), limit=1).records
    if not rollup or rollup[0].storage_id < newest:
        return dg.SkipReason(f"week {week}: waiting for the node rollups to include the newest collection")
    return dg.RunRequest(run_key=f"{week.isoformat()}:{newest}", partition_key=week.isoformat())


# Every minute, as the hierarchy's automation does: a re-collected day of the week reaches the weekly tables within a
# minute or two of its rollup, not half an hour later. A tick is a handful of event-log reads.
@dg.sensor(job=weekly_cost_deltas, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def weekly_cost_deltas_sensor(context: dg.SensorEvaluationContext):
    """Requests the last complete ISO week's deltas when its cost partitions are in."""
    return weekly_request(context.instance, dt.datetime.now(dt.UTC).date())
