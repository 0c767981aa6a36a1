"""Rebuild the ancestry and the node rollups on demand, e.g. after editing config/hierarchy.yaml, or
automatically after new data (the automation sensor)."""

import dagster as dg

HIERARCHY_ASSETS = ("resource_ancestry", "resources", "cost_node_daily", "cost_node_resource_daily")

refresh_hierarchy = dg.define_asset_job(
    "refresh_hierarchy",
    selection=dg.AssetSelection.assets(*HIERARCHY_ASSETS),
    description="Rebuild resource_ancestry and resources from config/hierarchy.yaml, then the node rollups from them.",
)

# Dagster's implicit automation sensor starts stopped; this one runs as soon as the daemon does (like the
# schedules), so the ancestry and the rollups follow new data without a toggle in the UI.
resource_ancestry_automation = dg.AutomationConditionSensorDefinition(
    "resource_ancestry_automation",
    target=dg.AssetSelection.assets(*HIERARCHY_ASSETS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Requests the hierarchy and the node rollups after any cost collector or the inventory wrote (see their automation conditions).",
)
