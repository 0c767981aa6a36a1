"""One collector asset per registered source (``<name>_cost_events``), each writing its days of polo.resource_events."""

import dagster as dg

from polo_pipelines.defs.collection.factory import collector_asset
from polo_pipelines.defs.partitions import daily_partitions
from polo_pipelines.sources import SOURCES

# source name -> its collector asset
COLLECTORS: dict[str, dg.AssetsDefinition] = {spec.name: collector_asset(spec, daily_partitions) for spec in SOURCES}


@dg.definitions
def collectors() -> dg.Definitions:
    # Each source's resource is built from the environment here, when the definitions load, never at import.
    return dg.Definitions(assets=list(COLLECTORS.values()), resources={spec.resource_key: spec.from_env() for spec in SOURCES})
