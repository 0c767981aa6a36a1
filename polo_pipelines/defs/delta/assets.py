"""Weekly cost deltas: which nodes and which resources moved in an ISO week against the week before."""

import dagster as dg
import pandas as pd

from polo_pipelines.cli.text import usd
from polo_pipelines.defs.collection.factory import markdown_table
from polo_pipelines.defs.partitions import weekly_partitions
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.drilldown import weekly
from polo_pipelines.drilldown.delta import change_label
from polo_pipelines.drilldown.periods import Periods, Settings
from polo_pipelines.drilldown.service import DrillDown

# What the weekly deltas read: the node rollups (Level 1), each resource's daily cost and its attributes.
UPSTREAM = ["cost_node_daily", "cost_node_resource_daily", "cost_resource_daily", "resources", "resource_ancestry"]
DEFAULTS = Settings()


class DeltaConfig(dg.Config):
    """What a weekly delta counts: the drill-down's thresholds (USD) and whether credits, refunds and tax count."""

    node_threshold: float = DEFAULTS.node_threshold
    resource_threshold: float = DEFAULTS.resource_threshold
    include_credits: bool = DEFAULTS.include_non_usage

    def settings(self) -> Settings:
        return Settings(self.node_threshold, self.resource_threshold, self.include_credits)


def _headline(service: DrillDown, periods: Periods, settings: Settings) -> dict:
    total = service.headline(periods, settings)
    complete = service.completeness(periods)
    return {
        "complete": all(c.complete for c in complete.values()),
        "completeness": dg.MetadataValue.text(
            " | ".join(said for name, c in complete.items() if (said := c.words(f"the {name} week")))
            or "every collector's days loaded, settled and never restated"
        ),
        "week_total_usd": dg.MetadataValue.float(round(total.current_cost, 2)),
        "previous_week_usd": dg.MetadataValue.float(round(total.compare_cost, 2)),
        "change_usd": dg.MetadataValue.float(round(total.delta, 2)),
        "change_pct": dg.MetadataValue.text(change_label(total.compare_cost, total.current_cost)),
        "node_threshold_usd": dg.MetadataValue.float(settings.node_threshold),
        "resource_threshold_usd": dg.MetadataValue.float(settings.resource_threshold),
        "include_credits": settings.include_non_usage,
    }


@dg.asset(
    partitions_def=weekly_partitions,
    group_name="delta",
    kinds={"clickhouse"},
    deps=UPSTREAM,
    metadata={"dagster/table_name": "polo.cost_delta_nodes_weekly"},
)
def cost_delta_nodes_weekly(context: dg.AssetExecutionContext, config: DeltaConfig, clickhouse: ClickHouseResource) -> dg.MaterializeResult:
    """Every hierarchy node whose cost moved more than the node threshold ($1 by default) in the ISO week against the week before."""
    week, settings = context.partition_time_window.start.date(), config.settings()
    periods = Periods.week(week)
    with clickhouse.session() as store:
        service = DrillDown(store)
        frame = weekly.node_deltas(store, week, settings)
        weekly.write_week(store, "polo.cost_delta_nodes_weekly", week, frame)
        headline = _headline(service, periods, settings)
        causes = service.causes(periods, settings, limit=10)
    top = frame.reindex(frame["delta"].abs().sort_values(ascending=False).index).head(15)
    top = top[["hierarchy", "node_id", "compare_cost", "current_cost", "delta"]]
    cause_rows = [(c.node_id, usd(c.delta, True), c.resources, c.top_resource, usd(c.top_resource_delta, True)) for c in causes]
    cause_table = pd.DataFrame(cause_rows, columns=["node_id", "delta", "resources", "top_resource", "top_resource_delta"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            **headline,
            "top_movers": dg.MetadataValue.md(markdown_table(top, money=("compare_cost", "current_cost", "delta"))),
            "causes": dg.MetadataValue.md(markdown_table(cause_table)),
        }
    )


@dg.asset(
    partitions_def=weekly_partitions,
    group_name="delta",
    kinds={"clickhouse"},
    deps=UPSTREAM,
    metadata={"dagster/table_name": "polo.cost_delta_resources_weekly"},
)
def cost_delta_resources_weekly(
    context: dg.AssetExecutionContext, config: DeltaConfig, clickhouse: ClickHouseResource
) -> dg.MaterializeResult:
    """Every resource whose cost moved more than the resource threshold ($0.50 by default) in the ISO week, with change type, type, name and creator."""
    week, settings = context.partition_time_window.start.date(), config.settings()
    with clickhouse.session() as store:
        frame = weekly.resource_deltas(store, week, settings)
        weekly.write_week(store, "polo.cost_delta_resources_weekly", week, frame)
        headline = _headline(DrillDown(store), Periods.week(week), settings)
    top = frame.head(15)[["resource_name", "resource_type", "detail", "change_type", "created_by", "delta"]]
    counts = frame["change_type"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            **headline,
            **{f"{kind}_resources": int(counts.get(kind, 0)) for kind in ("new_resource", "terminated", "cost_changed")},
            "top_resources": dg.MetadataValue.md(markdown_table(top, money=("delta",))),
        }
    )
