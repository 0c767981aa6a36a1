"""Each collector's stored days must hold exactly what their last load wrote: nothing counted twice, nothing half-written."""

import dagster as dg

from polo_pipelines.collect import markdown_table
from polo_pipelines.defs.collection.jobs import COLLECTOR_ASSETS_BY_GROUP
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.events import unreconciled_days

# collector asset -> its collector value in polo.resource_events (cost_<platform>)
COLLECTORS = {asset: f"cost_{group}" for group, asset in COLLECTOR_ASSETS_BY_GROUP.items()}


def _reconciles(asset: str, collector: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="stored_days_match_loads", description=f"{collector}: stored events per day equal the last load of that day")
    def check(clickhouse: ClickHouseResource) -> dg.AssetCheckResult:
        with clickhouse.session() as store:
            bad = unreconciled_days(store, collector)
        return dg.AssetCheckResult(
            passed=bad.empty,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"mismatched_days": len(bad), "details": dg.MetadataValue.md(markdown_table(bad.head(20)))},
        )

    return check


stored_days_checks = [_reconciles(asset, collector) for asset, collector in COLLECTORS.items()]
