"""Where AWS costs come from: a data export (S3 or a local folder) or Cost Explorer; and which accounts the inventory lists."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import PurePosixPath

import boto3
import dagster as dg

from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import env_flag, fx_rates
from polo_pipelines.sources.aws import cost_explorer, cur
from polo_pipelines.sources.locations import describe_location, open_location
from polo_pipelines.sources.spec import Collected, CostSource


class AwsCostSource(CostSource):
    """AWS cost source. mode 'export': CUR 2.0 / legacy CUR files at export_uri (s3://bucket/prefix/export or a
    folder). mode 'cost_explorer': service x account costs from GetCostAndUsage."""

    mode: str = "export"
    export_uri: str | None = None
    export_name: str | None = None
    exclude_credits: bool = False
    fx_rates: dict[str, float] = {}
    cost_explorer_region: str = "us-east-1"

    @property
    def configured(self) -> bool:
        return self.mode == "cost_explorer" or bool(self.export_uri)

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        if self.mode == "cost_explorer":
            client = boto3.client("ce", region_name=self.cost_explorer_region)
            window = cost_explorer.collect(client, start, end, exclude_credits=self.exclude_credits)
            return Collected(cur.COLLECTOR, cost_explorer.SOURCE, window.events, [cost_explorer.SOURCE], {"requests": window.requests})
        if self.mode != "export":
            raise PoloInputError(
                f"unknown AWS cost mode {self.mode!r}: use 'export' or 'cost_explorer'", source="aws", field="POLO_AWS_MODE"
            )
        if not self.export_uri:
            raise PoloInputError("no export to read: set POLO_AWS_CUR_URI", source="aws", field="POLO_AWS_CUR_URI")
        name = self.export_name or PurePosixPath(self.export_uri.rstrip("/")).name
        location = open_location(self.export_uri)
        window = cur.collect(location, name, start, end, fx_rates=self.fx_rates)
        return Collected(
            cur.COLLECTOR,
            location.uri,
            window.events,
            window.sources,
            {"line_items": window.line_items, "duplicate_files_skipped": len(window.duplicate_files)},
        )

    def check(self) -> str:
        if self.mode == "cost_explorer":
            identity = boto3.client("sts").get_caller_identity()
            return f"AWS account {identity['Account']} (Cost Explorer mode)"
        return describe_location(self.export_uri or "")

    def holds(self) -> tuple[dt.date, dt.date] | None:
        if self.mode != "export" or not self.export_uri:
            return None  # Cost Explorer answers any day of its retention
        name = self.export_name or PurePosixPath(self.export_uri.rstrip("/")).name
        return cur.days_held(open_location(self.export_uri), name, dt.datetime.now(dt.UTC).date())


def from_env() -> AwsCostSource:
    return AwsCostSource(
        mode=os.environ.get("POLO_AWS_MODE", "export"),
        export_uri=os.environ.get("POLO_AWS_CUR_URI") or None,
        export_name=os.environ.get("POLO_AWS_CUR_EXPORT_NAME") or None,
        exclude_credits=env_flag("POLO_AWS_EXCLUDE_CREDITS"),
        fx_rates=fx_rates(),
    )


class AwsInventorySource(dg.ConfigurableResource):
    """Accounts whose live resources the inventory lists (POLO_AWS_INVENTORY_TARGETS: JSON list of
    {"account_id", "role_arn", "regions"}); unset means the sample world's resources in moto."""

    targets_json: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.targets_json)

    def targets(self):
        from polo_pipelines.sources.aws.inventory import parse_targets

        return parse_targets(self.targets_json or "[]")


def inventory_from_env() -> AwsInventorySource:
    return AwsInventorySource(targets_json=os.environ.get("POLO_AWS_INVENTORY_TARGETS") or None)


class AwsOrganizationSource(dg.ConfigurableResource):
    """The AWS Organization (POLO_AWS_ORGANIZATION=1), read with the standard credential chain."""

    enabled: bool = False

    @property
    def configured(self) -> bool:
        return self.enabled

    def read(self, now: dt.datetime):
        from polo_pipelines.sources.aws.organization import read_organization

        return read_organization(boto3.client("organizations", region_name="us-east-1"), now)


def organization_from_env() -> AwsOrganizationSource:
    return AwsOrganizationSource(enabled=env_flag("POLO_AWS_ORGANIZATION"))
