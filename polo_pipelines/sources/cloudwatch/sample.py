"""The sample world's CloudWatch, in moto: each day's metrics of the world's resources, as AWS would have measured them.

The NAT gateway of acme-prod-1 processes four times its bytes from the last complete week's Monday (the traffic
of alice's instances, routed through it); instances run at their usual CPU. The source reads them with the real
client, in batches, as it reads CloudWatch.
"""

from __future__ import annotations

import datetime as dt
import zlib

from polo_pipelines.sources.cloudwatch.source import CloudWatchSource
from polo_pipelines.sources.spec import Collected

GB = 1e9


class SampleCloudWatch(CloudWatchSource):
    """CloudWatch in moto, seeded with the sample world's metrics for the window asked."""

    def collect(self, start: dt.date, end: dt.date, needs=None) -> Collected:
        import boto3
        from moto import mock_aws

        from polo_pipelines.sources import sample
        from polo_pipelines.sources.aws.sample_inventory import sample_credentials
        from polo_pipelines.sources.sample.world import SampleWorld

        window = sample.sample_window()
        world = SampleWorld(window[1]) if window else SampleWorld(dt.datetime.now(dt.UTC).date())
        with sample_credentials(), mock_aws():
            seed(boto3.client("cloudwatch", region_name="us-east-1"), world, [arn for arn, _ in needs or []], start, end)
            return super().collect(start, end, needs)


def seed(client, world, arns: list[str], start: dt.date, end: dt.date) -> None:
    """put_metric_data for the world's NAT gateways and instances asked, one value a day."""
    by_id = {r.rid: r for r in world.resources}
    data = []
    for arn in arns:
        r = by_id.get(arn.rsplit("/", 1)[-1])
        if r is None:
            continue
        for n in range((end - start).days):
            day = start + dt.timedelta(days=n)
            index = world.day_index(day)
            if not r.alive(index):
                continue
            at = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
            if r.kind == "natgateway":
                gb = world.nat_traffic_gb(r, index)
                data.append(("AWS/NATGateway", "BytesInFromSource", "NatGatewayId", r.rid, at, gb * GB * 0.8, "Bytes"))
                data.append(("AWS/NATGateway", "BytesInFromDestination", "NatGatewayId", r.rid, at, gb * GB * 0.2, "Bytes"))
            elif r.kind == "instance":
                data.append(("AWS/EC2", "CPUUtilization", "InstanceId", r.rid, at, 35.0 + zlib.crc32(r.rid.encode()) % 20, "Percent"))
    for first in range(0, len(data), 500):
        by_namespace: dict[str, list] = {}
        for namespace, name, dim, rid, at, value, unit in data[first : first + 500]:
            by_namespace.setdefault(namespace, []).append(
                {"MetricName": name, "Dimensions": [{"Name": dim, "Value": rid}], "Timestamp": at, "Value": value, "Unit": unit}
            )
        for namespace, items in by_namespace.items():
            for lo in range(0, len(items), 150):  # PutMetricData takes at most 1,000 values; kept well below
                client.put_metric_data(Namespace=namespace, MetricData=items[lo : lo + 150])


def sample_source():
    return SampleCloudWatch(enabled=True)
