"""The resource hierarchy (polo.resource_ancestry and polo.resources) and, downstream of it, the node rollups."""

import time

import dagster as dg

from polo_pipelines.defs import metadata
from polo_pipelines.defs.collection.jobs import COLLECTOR_ASSETS
from polo_pipelines.defs.collection.tables import table_spec
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.hierarchy import ancestry as hierarchy
from polo_pipelines.hierarchy.rollup import update_node_rollups

# New resources appear through any cost collector, or through the inventory before they cost anything
# (a state rule scoped to account:staging must see an instance launched an hour ago); the Organization moves accounts.
SOURCES = [*COLLECTOR_ASSETS, "aws_inventory_events", "aws_organization"]
# Eager, except that it does not wait for missing upstream data: a daily-partitioned source always has
# partitions never collected (or a platform never configured), and plain eager would then never run.
# It still waits while a source is being written, so a day's collection run triggers one rebuild.
AFTER_ANY_SOURCE = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()).with_label("eager_allow_missing")


@dg.multi_asset(
    name="resource_ancestry",
    specs=[
        table_spec(
            "resource_ancestry",
            "hierarchy",
            SOURCES,
            "Every resource's ancestors in each hierarchy of the hierarchy file and each the organisation declares (its AWS "
            "Organization, its cost categories), one row per ancestor at every depth.",
            automation_condition=AFTER_ANY_SOURCE,
        ),
        table_spec(
            "resources",
            "hierarchy",
            SOURCES,
            "Each resource's latest type, name, detail, creator and tags, rewritten with the ancestry.",
            automation_condition=AFTER_ANY_SOURCE,
        ),
    ],
)
def resource_ancestry(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource):
    """polo.resource_ancestry and polo.resources, rebuilt from the events the store holds and the hierarchy file when
    either changed since the last build (else kept, and the last build's figures reported)."""
    try:
        hierarchies = hierarchy.load()
    except hierarchy.HierarchyError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    with clickhouse.session() as store:
        refreshed = hierarchy.refresh_if_changed(store, hierarchies)
    for name, nodes in refreshed.conflicts.items():
        if nodes and refreshed.action == "rebuilt":
            context.log.warning(f"{name}: resources disagree about the parent of {', '.join(nodes[:10])}")
    yield dg.MaterializeResult(
        asset_key="resource_ancestry",
        metadata={
            "dagster/row_count": refreshed.ancestry_rows,
            "action": refreshed.action,
            "hierarchies": metadata.table(refreshed.summary),
            "hierarchy_file": str(hierarchy.hierarchy_file()),
        },
    )
    yield dg.MaterializeResult(asset_key="resources", metadata={"dagster/row_count": refreshed.resources, "action": refreshed.action})


ROLLUP_INPUTS = ["resource_ancestry", "resources", "cost_resource_daily"]


@dg.multi_asset(
    name="cost_node_rollups",
    specs=[
        table_spec(
            "cost_node_daily",
            "hierarchy",
            ROLLUP_INPUTS,
            "Cost per hierarchy node, day and charge category: Level 1 of the drill-down.",
            automation_condition=AFTER_ANY_SOURCE,
        ),
        table_spec(
            "cost_node_resource_daily",
            "hierarchy",
            ROLLUP_INPUTS,
            "Cost per node, day, resource and charge category with the resource's attributes: Level 2 of the drill-down.",
            automation_condition=AFTER_ANY_SOURCE,
        ),
    ],
)
def cost_node_rollups(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource):
    """The node rollups, following the ancestry: every day when it changed, else the days loaded since the last run."""
    started = time.perf_counter()
    with clickhouse.session() as store:
        action, rows = update_node_rollups(store)
    seconds = round(time.perf_counter() - started, 3)
    context.log.info(f"node rollups: {action} in {seconds} s")
    for key, table in (("cost_node_daily", "polo.cost_node_daily"), ("cost_node_resource_daily", "polo.cost_node_resource_daily")):
        yield dg.MaterializeResult(
            asset_key=key, metadata={"action": action, "rows_rewritten": rows[table], "seconds": dg.MetadataValue.float(seconds)}
        )
