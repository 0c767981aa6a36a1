"""Minutes, not days: the spans' last 15 minutes priced every 15 minutes (the daily ``otel_cost_events`` then prices
what came late and reconciles the day to the hosts' bills)."""

import datetime as dt

import dagster as dg

from polo_pipelines.defs import metadata
from polo_pipelines.defs.collection.factory import AsOfConfig, read_or_fail, source_to_read, store_failures
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.sources.otel import SPEC, costs
from polo_pipelines.sources.otel.source import OtelSource
from polo_pipelines.store.events import day_range, replace_days


class RecentConfig(AsOfConfig):
    # the buckets priced again: the last complete 15 minutes and those before it, for spans that arrive late
    lookback_minutes: int = 30


def recent_window(at: dt.datetime, lookback_minutes: int) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of whole 15-minute buckets ending at the last bucket boundary before ``at``."""
    at = at.astimezone(dt.UTC)
    end = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
    buckets = max(1, -(-lookback_minutes // 15))
    return end - buckets * costs.BUCKET, end


@dg.asset(
    group_name="otel",
    kinds={"clickhouse", "opentelemetry"},
    pool=SPEC.collector,  # one write of cost_otel at a time, with the daily asset
    output_required=False,
    metadata={"dagster/table_name": "polo.resource_events", "collector": SPEC.collector},
)
def otel_recent_costs(context: dg.AssetExecutionContext, config: RecentConfig, clickhouse: ClickHouseResource, otel: OtelSource):
    """The spans' last 15 minutes (and the lookback's) priced into cost events of collector cost_otel, basis estimated:
    a service's or operation's cost within minutes, and a 15-minute budget rule evaluated on it right after."""
    mode, source = source_to_read(SPEC, otel, clickhouse.is_embedded)
    if source is None:
        context.log.info("the OpenTelemetry source is not configured (POLO_OTEL=1): nothing priced, nothing materialized")
        return
    start, end = recent_window(config.moment(), config.lookback_minutes)
    with store_failures(), clickhouse.session() as store:
        events = read_or_fail(lambda: source.recent(store, start, end))
        days = day_range(start.date(), (end - dt.timedelta(microseconds=1)).date() + dt.timedelta(days=1))
        replace_days(
            store,
            events,
            collector=SPEC.collector,
            days=days,
            source="polo.otel_traces",
            sources=["polo.otel_traces"],
            run_id=context.run.run_id,
            allow_empty_days=True,
            within=(start, end),
        )
    per_operation = (
        events.groupby("resource_arn", as_index=False)["value"].sum().sort_values("value", ascending=False).head(10)
        if len(events)
        else events[["resource_arn", "value"]]
    )
    context.log.info(f"cost_otel {start:%Y-%m-%d %H:%M}..{end:%H:%M}: {len(events)} lines, ${events['value'].sum():,.4f}")
    yield dg.MaterializeResult(
        metadata={
            "window": f"{start.isoformat()} .. {end.isoformat()}",
            "lines": len(events),
            "cost": metadata.money(float(events["value"].sum())),
            "top_operations": metadata.table(
                per_operation.rename(columns={"resource_arn": "operation", "value": "cost"}), money_cols=("cost",)
            ),
            "dagster/row_count": len(events),
        }
    )
