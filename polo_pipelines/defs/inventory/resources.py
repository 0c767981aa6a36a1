"""Which accounts the AWS inventory lists (POLO_AWS_INVENTORY_TARGETS), read when the definitions load."""

import dagster as dg

from polo_pipelines.sources.aws.source import inventory_from_env


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"aws_inventory": inventory_from_env()})
