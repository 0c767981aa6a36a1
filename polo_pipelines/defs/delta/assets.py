"""Weekly cost deltas: which nodes and which resources moved in an ISO week against the week before."""

import dagster as dg

from polo_pipelines.defs.collection.factory import markdown_table
from polo_pipelines.defs.collection.jobs import COLLECTOR_ASSETS
from polo_pipelines.defs.partitions import weekly_partitions
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.drilldown import delta, weekly
from polo_pipelines.hierarchy import ancestry as hierarchy

UPSTREAM = [*(dg.AssetDep(asset) for asset in COLLECTOR_ASSETS), dg.AssetDep("resource_ancestry")]


def _headline(store, week) -> dict:
    compare, current = delta.totals(store, weekly.week_periods(week))
    pct = delta.pct_change(compare, current)
    return {
        "week_total_usd": dg.MetadataValue.float(round(current, 2)),
        "previous_week_usd": dg.MetadataValue.float(round(compare, 2)),
        "change_usd": dg.MetadataValue.float(round(current - compare, 2)),
        "change_pct": dg.MetadataValue.text("new" if pct is None else f"{pct:+.1f}%"),
    }


@dg.asset(partitions_def=weekly_partitions, group_name="delta", kinds={"clickhouse"}, deps=UPSTREAM)
def cost_delta_nodes_weekly(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource) -> dg.MaterializeResult:
    """Every hierarchy node whose cost moved more than $1 in the ISO week against the week before."""
    week = context.partition_time_window.start.date()
    with clickhouse.session() as store:
        frame = weekly.node_deltas(store, week)
        weekly.write_week(store, "polo.cost_delta_nodes_weekly", week, frame)
        headline = _headline(store, week)
        catch_all = {h.unassigned for h in hierarchy.load().values() if h.unassigned}
        causes = delta.causes(store, weekly.week_periods(week), catch_all=catch_all, limit=10)
    top = frame.reindex(frame["delta"].abs().sort_values(ascending=False).index).head(15)
    top = top[["hierarchy", "node_id", "compare_cost", "current_cost", "delta"]]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            **headline,
            "top_movers": dg.MetadataValue.md(markdown_table(top, money=("compare_cost", "current_cost", "delta"))),
            "causes": dg.MetadataValue.md(
                markdown_table(
                    causes[["node_id", "delta", "resources", "top_resource", "top_resource_delta"]], money=("delta", "top_resource_delta")
                )
            ),
        }
    )


@dg.asset(partitions_def=weekly_partitions, group_name="delta", kinds={"clickhouse"}, deps=UPSTREAM)
def cost_delta_resources_weekly(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource) -> dg.MaterializeResult:
    """Every resource whose cost moved more than $0.50 in the ISO week, with change type, type, name and creator."""
    week = context.partition_time_window.start.date()
    with clickhouse.session() as store:
        frame = weekly.resource_deltas(store, week)
        weekly.write_week(store, "polo.cost_delta_resources_weekly", week, frame)
        headline = _headline(store, week)
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
