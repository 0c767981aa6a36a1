"""The resource hierarchy: polo.resource_ancestry from config/hierarchy.yaml, and the node rollup that depends on it."""

import time

import dagster as dg

from polo_pipelines.defs.collection.factory import markdown_table
from polo_pipelines.defs.collection.jobs import COLLECTOR_ASSETS
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.hierarchy import ancestry as hierarchy
from polo_pipelines.hierarchy.rollup import ancestry_fingerprint, follow_ancestry

# New resources appear through any cost collector, or through the inventory before they cost anything
# (a state rule scoped to account:staging must see an instance launched an hour ago).
SOURCES = [*COLLECTOR_ASSETS, "aws_inventory_events"]
# Eager, except that it does not wait for missing upstream data: a daily-partitioned source always has
# partitions never collected (or a platform never configured), and plain eager would then never run.
# It still waits while a source is being written, so a day's collection run triggers one rebuild.
AFTER_ANY_SOURCE = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()).with_label("eager_allow_missing")


@dg.asset(group_name="hierarchy", kinds={"clickhouse"}, deps=SOURCES, automation_condition=AFTER_ANY_SOURCE)
def resource_ancestry(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource) -> dg.MaterializeResult:
    """Every resource's ancestors in each hierarchy of config/hierarchy.yaml, one row per ancestor at every depth
    (and polo.resources, each resource's latest type, name and creator)."""
    try:
        hierarchies = hierarchy.load()
    except hierarchy.HierarchyError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    with clickhouse.session() as store:
        before = ancestry_fingerprint(store)
        resources, result = hierarchy.refresh(store, hierarchies)
        started = time.perf_counter()
        node_rollups, node_rows = follow_ancestry(store, before)
        rollup_s = time.perf_counter() - started
    summary = (
        result.rows.groupby("hierarchy")
        .agg(nodes=("ancestor_id", "nunique"), rows=("ancestor_id", "size"), max_depth=("depth", "max"))
        .reset_index()
    )
    summary["unplaced_resources"] = summary["hierarchy"].map(result.unplaced)
    summary["parent_conflicts"] = summary["hierarchy"].map(lambda h: len(result.conflicts[h]))
    for name, nodes in result.conflicts.items():
        if nodes:
            context.log.warning(f"{name}: resources disagree about the parent of {', '.join(nodes[:10])}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(result.rows),
            "resources": len(resources),
            "hierarchies": dg.MetadataValue.md(markdown_table(summary)),
            "node_rollups": node_rollups,
            "node_rollup_rows": node_rows["polo.cost_node_daily"],
            "node_resource_rollup_rows": node_rows["polo.cost_node_resource_daily"],
            "node_rollup_s": round(rollup_s, 3),
            "hierarchy_file": str(hierarchy.hierarchy_file()),
        }
    )
