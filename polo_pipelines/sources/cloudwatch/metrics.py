"""The CloudWatch metrics that drive a resource's cost, read per day with GetMetricData (500 queries a request).

Which metric explains a resource's cost depends on what it is: a NAT gateway is billed per byte it processes, an
instance by the hour (its CPU and network say whether it is used), a volume by size and operations, a function by
invocations and duration. Each resource's ARN names its kind and its id, so the query needs nothing else. A metric
that is the sum of two (bytes in from both sides of a NAT) is summed per day here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.aws.calls import aws_call
from polo_pipelines.store.events import EVENT_COLUMNS, conform, properties_column

COLLECTOR = "metrics_aws"
SOURCE = "cloudwatch"
BATCH = 500  # GetMetricData's limit of queries per request
DAY = 86400


@dataclass(frozen=True)
class Metric:
    label: str  # what the timeline says: "bytes processed"
    namespace: str
    names: tuple[str, ...]  # summed per day
    statistic: str
    unit: str


@dataclass(frozen=True)
class Kind:
    """What a kind of resource is measured by, and how its ARN names the dimension."""

    dimension: Callable[[str], list[dict]]
    metrics: tuple[Metric, ...]


def _tail(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


KINDS: dict[str, Kind] = {
    "ec2:natgateway": Kind(
        lambda arn: [{"Name": "NatGatewayId", "Value": _tail(arn)}],
        (Metric("bytes processed", "AWS/NATGateway", ("BytesInFromSource", "BytesInFromDestination"), "Sum", "Bytes"),),
    ),
    "ec2:instance": Kind(
        lambda arn: [{"Name": "InstanceId", "Value": _tail(arn)}],
        (
            Metric("CPU", "AWS/EC2", ("CPUUtilization",), "Average", "Percent"),
            Metric("network out", "AWS/EC2", ("NetworkOut",), "Sum", "Bytes"),
        ),
    ),
    "ec2:volume": Kind(
        lambda arn: [{"Name": "VolumeId", "Value": _tail(arn)}],
        (
            Metric("operations", "AWS/EBS", ("VolumeReadOps", "VolumeWriteOps"), "Sum", "Count"),
            Metric("throughput", "AWS/EBS", ("VolumeReadBytes", "VolumeWriteBytes"), "Sum", "Bytes"),
        ),
    ),
    "rds:db": Kind(
        lambda arn: [{"Name": "DBInstanceIdentifier", "Value": arn.rsplit(":", 1)[-1]}],
        (
            Metric("CPU", "AWS/RDS", ("CPUUtilization",), "Average", "Percent"),
            Metric("connections", "AWS/RDS", ("DatabaseConnections",), "Average", "Count"),
        ),
    ),
    "lambda:function": Kind(
        lambda arn: [{"Name": "FunctionName", "Value": arn.split(":")[6] if arn.count(":") >= 6 else _tail(arn)}],
        (
            Metric("invocations", "AWS/Lambda", ("Invocations",), "Sum", "Count"),
            Metric("duration", "AWS/Lambda", ("Duration",), "Sum", "Milliseconds"),
        ),
    ),
    "s3:bucket": Kind(
        lambda arn: [{"Name": "BucketName", "Value": arn.rsplit(":", 1)[-1]}, {"Name": "StorageType", "Value": "StandardStorage"}],
        (Metric("bucket size", "AWS/S3", ("BucketSizeBytes",), "Average", "Bytes"),),
    ),
    "dynamodb:table": Kind(
        lambda arn: [{"Name": "TableName", "Value": _tail(arn)}],
        (Metric("consumed capacity", "AWS/DynamoDB", ("ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits"), "Sum", "Count"),),
    ),
    "elasticloadbalancing:app": Kind(
        lambda arn: [{"Name": "LoadBalancer", "Value": arn.split(":loadbalancer/", 1)[-1]}],
        (Metric("LCUs", "AWS/ApplicationELB", ("ConsumedLCUs",), "Sum", "Count"),),
    ),
    "elasticloadbalancing:net": Kind(
        lambda arn: [{"Name": "LoadBalancer", "Value": arn.split(":loadbalancer/", 1)[-1]}],
        (Metric("LCUs", "AWS/NetworkELB", ("ConsumedLCUs",), "Sum", "Count"),),
    ),
}


def kind_of(arn: str) -> str | None:
    """The measured kind an ARN names, or None (a service-level id, another platform, a kind without a cost metric)."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return None
    service, resource = parts[2], parts[5]
    if service == "ec2":
        kind = {"natgateway": "ec2:natgateway", "instance": "ec2:instance", "volume": "ec2:volume"}.get(resource.split("/", 1)[0])
    elif service == "rds" and resource.startswith("db:"):
        kind = "rds:db"
    elif service == "lambda" and resource.startswith("function:"):
        kind = "lambda:function"
    elif service == "s3" and resource and "/" not in resource:
        kind = "s3:bucket"
    elif service == "dynamodb" and resource.startswith("table/"):
        kind = "dynamodb:table"
    elif service == "elasticloadbalancing" and resource.startswith("loadbalancer/"):
        kind = {"app": "elasticloadbalancing:app", "net": "elasticloadbalancing:net"}.get(resource.split("/")[1] if "/" in resource else "")
    else:
        kind = None
    return kind


def account_region(arn: str) -> tuple[str, str]:
    parts = arn.split(":", 5)
    return parts[4], parts[3] or "us-east-1"  # S3's ARNs name neither; its metrics are in the bucket's region, us-east-1 here


@dataclass(frozen=True)
class Query:
    resource_arn: str
    metric: Metric
    name: str  # one of metric.names


def queries(arns: Iterable[str]) -> list[Query]:
    out = []
    for arn in arns:
        kind = kind_of(arn)
        if kind is None:
            continue
        for metric in KINDS[kind].metrics:
            out.extend(Query(arn, metric, name) for name in metric.names)
    return out


def read(client, found: list[Query], start: dt.date, end: dt.date, partition: str) -> dict[tuple[str, str], dict[dt.date, float]]:
    """Each (resource, metric label)'s daily values over [start, end), from GetMetricData in batches of 500."""
    out: dict[tuple[str, str], dict[dt.date, float]] = {}
    lo = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    hi = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)
    for first in range(0, len(found), BATCH):
        batch = found[first : first + BATCH]
        request = [
            {
                "Id": f"q{n}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": q.metric.namespace,
                        "MetricName": q.name,
                        "Dimensions": KINDS[kind_of(q.resource_arn)].dimension(q.resource_arn),
                    },
                    "Period": DAY,
                    "Stat": q.metric.statistic,
                },
                "ReturnData": True,
            }
            for n, q in enumerate(batch)
        ]
        token = None
        while True:
            page = aws_call(
                client.get_metric_data,
                f"cloudwatch GetMetricData {client.meta.region_name} (queries {first + 1}..{first + len(batch)})",
                source=SOURCE,
                partition=partition,
                MetricDataQueries=request,
                StartTime=lo,
                EndTime=hi,
                **({"NextToken": token} if token else {}),
            )
            for result in page.get("MetricDataResults", []):
                ident = result.get("Id", "")
                if not ident.startswith("q") or not ident[1:].isdigit() or int(ident[1:]) >= len(batch):
                    raise PoloInputError(
                        f"GetMetricData answered an id it was not asked: {ident!r}",
                        source=SOURCE,
                        field="MetricDataResults.Id",
                        partition=partition,
                    )
                q = batch[int(ident[1:])]
                series = out.setdefault((q.resource_arn, q.metric.label), {})
                for at, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                    day = at.astimezone(dt.UTC).date() if at.tzinfo else at.date()
                    if start <= day < end:
                        series[day] = series.get(day, 0.0) + float(value)
            token = page.get("NextToken")
            if not token:
                break
    return out


def to_events(values: dict[tuple[str, str], dict[dt.date, float]], types: dict[str, str]) -> pd.DataFrame:
    units = {m.label: m for kind in KINDS.values() for m in kind.metrics}
    rows = [(arn, label, day, value) for (arn, label), series in values.items() for day, value in series.items()]
    if not rows:
        return conform(pd.DataFrame(columns=EVENT_COLUMNS))
    frame = pd.DataFrame(rows, columns=["resource_arn", "label", "day", "value"])
    ids = frame["resource_arn"].str.split(":", n=5)
    events = pd.DataFrame(
        {
            "resource_arn": frame["resource_arn"],
            "resource_type": frame["resource_arn"].map(lambda a: types.get(a) or kind_of(a) or ""),
            "resource_name": frame["resource_arn"].map(lambda a: a.rsplit("/", 1)[-1].rsplit(":", 1)[-1]),
            "event_time": pd.to_datetime(frame["day"]),
            "event_type": "metric",
            "event_action": frame["label"],
            "value": frame["value"],
            "billed_cost": 0.0,
            "list_cost": 0.0,
            "charge_category": "",
            "service": "",
            "provider": "AWS",
            "unit": frame["label"].map(lambda label: units[label].unit),
            "actor_name": "",
            "collector": COLLECTOR,
            "aws_account_id": ids.str[4].fillna(""),
            "aws_region": ids.str[3].fillna(""),
        }
    )
    events["properties"] = properties_column([{"metric": label, "statistic": units[label].statistic} for label in frame["label"]])
    return conform(events)
