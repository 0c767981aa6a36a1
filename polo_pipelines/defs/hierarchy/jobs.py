"""Rebuild the ancestry (and with it the node rollups) on demand, e.g. after editing config/hierarchy.yaml, or
automatically after new data (the automation sensor)."""

import dagster as dg

refresh_hierarchy = dg.define_asset_job(
    "refresh_hierarchy",
    selection=["resource_ancestry"],
    description="Rebuild resource_ancestry from config/hierarchy.yaml and the node rollup from it.",
)

# Dagster's implicit automation sensor starts stopped; this one runs as soon as the daemon does (like the
# schedules), so the ancestry follows new resources without a toggle in the UI.
resource_ancestry_automation = dg.AutomationConditionSensorDefinition(
    "resource_ancestry_automation",
    target=dg.AssetSelection.assets("resource_ancestry"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Requests resource_ancestry after any cost collector or the inventory wrote (see its automation condition).",
)
