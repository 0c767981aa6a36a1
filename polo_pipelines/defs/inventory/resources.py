"""Which accounts the AWS inventory lists (POLO_AWS_INVENTORY_TARGETS) and whether the AWS Organization is read
(POLO_AWS_ORGANIZATION), read when the definitions load."""

import dagster as dg

from polo_pipelines.sources.aws.source import inventory_from_env, organization_from_env


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"aws_inventory": inventory_from_env(), "aws_organization": organization_from_env()})
