"""Each collector's stored days must hold exactly what their last load wrote: nothing counted twice, nothing half-written."""

import dagster as dg

from polo_pipelines.defs import metadata
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.sources import SOURCES
from polo_pipelines.store.events import unreconciled_days

# collector asset -> its collector value in polo.resource_events
COLLECTORS = {spec.asset_name: spec.collector for spec in SOURCES}


def _reconciles(asset: str, collector: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset, name="stored_days_match_loads", description=f"{collector}: stored events per day equal the last load of that day"
    )
    def check(clickhouse: ClickHouseResource) -> dg.AssetCheckResult:
        with clickhouse.session() as store:
            bad = unreconciled_days(store, collector)
        return dg.AssetCheckResult(
            passed=bad.empty,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"mismatched_days": len(bad), "details": metadata.table(bad.head(20), money_cols=("loaded_cost", "stored_cost"))},
        )

    return check


stored_days_checks = [_reconciles(asset, collector) for asset, collector in COLLECTORS.items()]
