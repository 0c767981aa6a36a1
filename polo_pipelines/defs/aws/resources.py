"""Where AWS costs come from: a data export (S3 or a local folder) or Cost Explorer; the sample world by default."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import PurePosixPath

import boto3
import dagster as dg
from dagster_aws.s3 import S3Resource

from polo_pipelines import sample
from polo_pipelines.aws import cost_explorer, cur
from polo_pipelines.collect import Collected
from polo_pipelines.locations import open_location
from polo_pipelines.settings import env_flag, fx_rates


class AwsCostSource(dg.ConfigurableResource):
    """AWS cost source. mode 'export': CUR 2.0 / legacy CUR files at export_uri (s3://bucket/prefix/export or a
    folder; unset means the sample world). mode 'cost_explorer': service x account costs from GetCostAndUsage."""

    mode: str = "export"
    export_uri: str | None = None
    export_name: str | None = None
    exclude_credits: bool = False
    fx_rates: dict[str, float] = {}
    cost_explorer_region: str = "us-east-1"

    @property
    def is_sample(self) -> bool:
        return self.mode == "export" and not self.export_uri

    def collect(self, start: dt.date, end: dt.date, s3_client=None) -> Collected:
        if self.mode == "cost_explorer":
            client = boto3.client("ce", region_name=self.cost_explorer_region)
            window = cost_explorer.collect(client, start, end, exclude_credits=self.exclude_credits)
            return Collected(cur.COLLECTOR, cost_explorer.SOURCE, window.events, [cost_explorer.SOURCE], {"requests": window.requests})
        if self.mode != "export":
            raise dg.Failure(description=f"unknown AWS cost mode {self.mode!r}: use 'export' or 'cost_explorer'", allow_retries=False)
        uri = self.export_uri or str(sample.aws_export_root())
        name = self.export_name or PurePosixPath(uri.rstrip("/")).name
        location = open_location(uri, s3_client=s3_client if uri.startswith("s3://") else None)
        extra = sample.SAMPLE_PROPERTIES if self.is_sample else None
        window = cur.collect(location, name, start, end, fx_rates=self.fx_rates, extra_properties=extra)
        return Collected(cur.COLLECTOR, location.uri, window.events, window.sources, {"line_items": window.line_items})


def aws_source_from_env() -> AwsCostSource:
    return AwsCostSource(
        mode=os.environ.get("POLO_AWS_MODE", "export"),
        export_uri=os.environ.get("POLO_AWS_CUR_URI") or None,
        export_name=os.environ.get("POLO_AWS_CUR_EXPORT_NAME") or None,
        exclude_credits=env_flag("POLO_AWS_EXCLUDE_CREDITS"),
        fx_rates=fx_rates(),
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "aws_costs": aws_source_from_env(),
            "s3": S3Resource(region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"),
        }
    )


class AwsInventorySource(dg.ConfigurableResource):
    """Accounts whose live resources the inventory lists (POLO_AWS_INVENTORY_TARGETS: JSON list of
    {"account_id", "role_arn", "regions"}); unset means the sample world's resources in moto."""

    targets_json: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.targets_json)

    def targets(self):
        from polo_pipelines.aws.inventory import parse_targets

        return parse_targets(self.targets_json or "[]")


def _inventory_from_env() -> AwsInventorySource:
    return AwsInventorySource(targets_json=os.environ.get("POLO_AWS_INVENTORY_TARGETS") or None)


@dg.definitions
def inventory_resources() -> dg.Definitions:
    return dg.Definitions(resources={"aws_inventory": _inventory_from_env()})
