"""Which resources' metrics to read (the day's most expensive AWS resources, from the store) and with which credentials."""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict

import boto3
from botocore.config import Config

from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import env_flag
from polo_pipelines.sources.cloudwatch import metrics
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import window_label

# Throttling and 5xx are retried by the client, with backoff, a bounded number of times
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 8})
DEFAULT_MAX_RESOURCES = 5000


class CloudWatchSource(CostSource):
    """CloudWatch metrics of the resources with cost in the window (POLO_CLOUDWATCH=1)."""

    enabled: bool = False
    max_resources: int = DEFAULT_MAX_RESOURCES
    role_pattern: str | None = None  # "arn:aws:iam::{account}:role/polo-metrics"
    endpoint_url: str | None = None

    @property
    def configured(self) -> bool:
        return self.enabled

    def needs(self, store, start: dt.date, end: dt.date) -> list[tuple[str, str]]:
        """(ARN, type) of the window's most expensive AWS resources that have a cost metric, at most max_resources."""
        frame = store.query_df(
            """
            SELECT c.resource_arn AS resource_arn, any(r.resource_type) AS resource_type, sum(c.cost) AS cost
            FROM polo.cost_resource_daily AS c LEFT JOIN polo.resources AS r ON r.resource_arn = c.resource_arn
            WHERE c.day >= {lo:Date} AND c.day < {hi:Date} AND startsWith(c.resource_arn, 'arn:aws:')
            GROUP BY c.resource_arn ORDER BY cost DESC, resource_arn
            """,
            {"lo": start, "hi": end},
            columns=["resource_arn", "resource_type", "cost"],
        )
        measured = [(a, t) for a, t in zip(frame["resource_arn"], frame["resource_type"]) if metrics.kind_of(a)]
        return measured[: self.max_resources]

    def client(self, account: str, region: str):
        if not self.role_pattern:
            return boto3.client("cloudwatch", region_name=region, config=RETRIES, endpoint_url=self.endpoint_url)
        creds = boto3.client("sts", config=RETRIES).assume_role(
            RoleArn=self.role_pattern.format(account=account), RoleSessionName="polo-metrics"
        )["Credentials"]
        return boto3.client(
            "cloudwatch",
            region_name=region,
            config=RETRIES,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def collect(self, start: dt.date, end: dt.date, needs: list[tuple[str, str]] | None = None) -> Collected:
        if needs is None:
            raise PoloInputError("CloudWatch needs the window's resources from the store", source=metrics.SOURCE, field="resources")
        partition = window_label(start, end)
        by_place: dict[tuple[str, str], list[str]] = defaultdict(list)
        for arn, _ in needs:
            by_place[metrics.account_region(arn)].append(arn)
        values, asked, requests = {}, 0, 0
        for (account, region), arns in sorted(by_place.items()):
            found = metrics.queries(arns)
            asked += len(found)
            requests += -(-len(found) // metrics.BATCH)
            values.update(metrics.read(self.client(account, region), found, start, end, partition))
        events = metrics.to_events(values, dict(needs))
        places = [f"cloudwatch {region} (account {account})" for account, region in sorted(by_place)]
        return Collected(
            metrics.COLLECTOR, "cloudwatch", events, places, {"resources": len(needs), "metrics_asked": asked, "requests": requests}
        )

    def check(self) -> str:
        client = boto3.client("cloudwatch", config=RETRIES, endpoint_url=self.endpoint_url)
        client.list_metrics(Namespace="AWS/EC2", MetricName="CPUUtilization")
        return "CloudWatch answers ListMetrics"


def from_env() -> CloudWatchSource:
    raw = os.environ.get("POLO_CLOUDWATCH_MAX_RESOURCES", "")
    try:
        limit = int(raw) if raw else DEFAULT_MAX_RESOURCES
    except ValueError:
        raise PoloInputError(f"not a whole number: {raw!r}", source="settings", field="POLO_CLOUDWATCH_MAX_RESOURCES") from None
    return CloudWatchSource(
        enabled=env_flag("POLO_CLOUDWATCH"), max_resources=limit, role_pattern=os.environ.get("POLO_CLOUDWATCH_ROLE") or None
    )
