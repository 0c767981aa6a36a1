"""Weekly cost deltas: which nodes and which resources moved in an ISO week against the week before."""

import dagster as dg
import pandas as pd

from polo_pipelines.defs import metadata
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
        "week_total": metadata.money(total.current_cost),
        "change": metadata.money(total.delta, signed=True),
        "change_pct": dg.MetadataValue.text(change_label(total.compare_cost, total.current_cost)),
        "complete": all(c.complete for c in complete.values()),
        "completeness": dg.MetadataValue.text(
            " | ".join(said for name, c in complete.items() if (said := c.words(f"the {name} week")))
            or "every collector's days loaded, settled and never restated"
        ),
        "week_total_usd": metadata.plotted(total.current_cost),
        "previous_week_usd": metadata.plotted(total.compare_cost),
        "change_usd": metadata.plotted(total.delta),
        "node_threshold_usd": dg.MetadataValue.float(settings.node_threshold),
        "resource_threshold_usd": dg.MetadataValue.float(settings.resource_threshold),
        "include_credits": settings.include_non_usage,
    }


def week_chart(current: pd.DataFrame, compare: pd.DataFrame) -> dg.MetadataValue:
    """Each weekday's cost this week against the same weekday of the week before, as bars."""
    labels = [f"{d:%a %d}" for d in current["day"]]
    return metadata.bars(labels, {"this week": list(current["cost"]), "before": list(compare["cost"])})


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
        current, compare = service.daily(periods, settings)
        # Level 3 for the top causes: what the data says moved each one's largest resource
        explained = [
            (c.node_id, c.top_resource_name or c.top_resource, service.explain(c.top_resource, periods, settings).text) for c in causes[:5]
        ]
    top = frame.reindex(frame["delta"].abs().sort_values(ascending=False).index).head(15)
    top = top[["node_id", "compare_cost", "current_cost", "delta"]].assign(
        change=lambda f: [change_label(a, b) for a, b in zip(f["compare_cost"], f["current_cost"])]
    )
    cause_rows = [(c.node_id, c.delta, c.resources, c.top_resource, c.top_resource_delta) for c in causes]
    cause_table = pd.DataFrame(cause_rows, columns=["node_id", "delta", "resources", "top_resource", "top_resource_delta"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            **headline,
            "week_against_week_before": week_chart(current, compare),
            "top_movers": metadata.table(top, money_cols=("compare_cost", "current_cost"), signed=("delta",)),
            "causes": metadata.table(cause_table, signed=("delta", "top_resource_delta")),
            "explanations": metadata.table(pd.DataFrame(explained, columns=["cause", "resource", "explanation"])),
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
            "top_resources": metadata.table(top, signed=("delta",)),
        }
    )
