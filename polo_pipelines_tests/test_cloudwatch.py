"""CloudWatch: the metric that drives each costly resource's cost, read from moto with GetMetricData in batches of 500."""

from __future__ import annotations

import datetime as dt

import boto3
import dagster as dg
import pytest
from moto import mock_aws

from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.drilldown.periods import Periods
from polo_pipelines.drilldown.service import DrillDown
from polo_pipelines.sources.cloudwatch import metrics
from polo_pipelines.sources.cloudwatch.source import CloudWatchSource
from polo_pipelines.store import polo_store
from polo_pipelines.store.events import day_range

from .conftest import load_daily_costs

NAT = "arn:aws:ec2:us-east-1:111111111111:natgateway/nat-1"
DAYS = day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 16))
CHANGE = dt.date(2026, 11, 9)
GB = 1e9


@pytest.fixture
def cloudwatch(aws_credentials):
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def put(client, namespace: str, name: str, dim: str, rid: str, day: dt.date, value: float, unit: str) -> None:
    at = dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC)
    client.put_metric_data(
        Namespace=namespace,
        MetricData=[{"MetricName": name, "Dimensions": [{"Name": dim, "Value": rid}], "Timestamp": at, "Value": value, "Unit": unit}],
    )


@pytest.mark.parametrize(
    "arn, kind",
    [
        (NAT, "ec2:natgateway"),
        ("arn:aws:ec2:us-east-1:1:instance/i-1", "ec2:instance"),
        ("arn:aws:ec2:us-east-1:1:volume/vol-1", "ec2:volume"),
        ("arn:aws:rds:us-east-1:1:db:orders", "rds:db"),
        ("arn:aws:lambda:us-east-1:1:function:resize", "lambda:function"),
        ("arn:aws:s3:::acme-backups", "s3:bucket"),
        ("arn:aws:dynamodb:us-east-1:1:table/orders", "dynamodb:table"),
        ("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/0f1e", "elasticloadbalancing:app"),
        ("arn:aws:ec2:us-east-1:1:reserved-instances/ri-1", None),
        ("aws:111111111111/AmazonEC2/us-east-1", None),
        ("github:acme/actions/workflow/ci.yml", None),
    ],
)
def test_each_kind_of_resource_has_the_metric_that_drives_its_cost(arn, kind):
    assert metrics.kind_of(arn) == kind


def test_daily_values_in_batches_of_500_summing_a_metric_of_two(cloudwatch):
    for day in DAYS[:3]:
        put(cloudwatch, "AWS/NATGateway", "BytesInFromSource", "NatGatewayId", "nat-1", day, 100 * GB, "Bytes")
        put(cloudwatch, "AWS/NATGateway", "BytesInFromDestination", "NatGatewayId", "nat-1", day, 40 * GB, "Bytes")
    instances = [f"arn:aws:ec2:us-east-1:111111111111:instance/i-{n:04d}" for n in range(300)]
    put(cloudwatch, "AWS/EC2", "CPUUtilization", "InstanceId", "i-0007", DAYS[0], 55.0, "Percent")
    calls = []
    count = lambda params, **kw: calls.append(len(params["MetricDataQueries"]))  # noqa: E731
    cloudwatch.meta.events.register("provide-client-params.cloudwatch.GetMetricData", count)
    found = metrics.queries([NAT, *instances])
    assert len(found) == 2 + 300 * 2
    values = metrics.read(cloudwatch, found, DAYS[0], DAYS[3], "p")
    assert calls == [500, 102]  # 602 queries: two requests
    assert values[(NAT, "bytes processed")] == {d: 140 * GB for d in DAYS[:3]}
    assert values[(instances[7], "CPU")] == {DAYS[0]: 55.0}
    events = metrics.to_events(values, {NAT: "ec2:natgateway"})
    nat = events[events["resource_arn"] == NAT]
    assert set(nat["event_type"]) == {"metric"} and set(nat["unit"]) == {"Bytes"} and set(nat["event_action"]) == {"bytes processed"}
    assert dict(nat["properties"].iloc[0]) == {"metric": "bytes processed", "statistic": "Sum"}


def test_the_asset_reads_the_costly_resources_and_the_explanation_names_the_metric(cloudwatch, dsn):
    from polo_pipelines.defs.collection.assets import COLLECTORS

    cheap = "arn:aws:ec2:us-east-1:111111111111:instance/i-cheap"
    with polo_store(dsn) as store:
        load_daily_costs(store, {NAT: [26.0 if d >= CHANGE else 7.2 for d in DAYS], cheap: [0.5] * len(DAYS)}, DAYS)
    for day in DAYS:
        gb = 840 if day >= CHANGE else 210
        put(cloudwatch, "AWS/NATGateway", "BytesInFromSource", "NatGatewayId", "nat-1", day, gb * GB, "Bytes")
        put(cloudwatch, "AWS/EC2", "CPUUtilization", "InstanceId", "i-cheap", day, 3.0, "Percent")
    source = CloudWatchSource(enabled=True, max_resources=1)  # the most expensive resource only
    resources = {"clickhouse": ClickHouseResource(dsn=dsn), "cloudwatch": source}
    for day in DAYS:
        assert dg.materialize([COLLECTORS["cloudwatch"]], partition_key=str(day), resources=resources).success
    with polo_store(dsn) as store:
        stored = store.query_df(
            "SELECT resource_arn, count() AS n FROM polo.resource_events WHERE collector = 'metrics_aws' GROUP BY resource_arn"
        )
        assert dict(zip(stored["resource_arn"], stored["n"])) == {NAT: len(DAYS)}  # the limit kept the cheap one out
        found = DrillDown(store).explain(NAT, Periods(DAYS[7], DAYS[-1] + dt.timedelta(days=1), DAYS[0], DAYS[7]))
    assert found.text.startswith("bytes processed 4.0× (210 GB → 840 GB a day); cost 3.6× from 2026-11-09")


class GetMetricData:
    """CloudWatch's GetMetricData on a real local server, in the JSON shape the client speaks: answers ``script`` in
    order (status, body), the last one from then on; records what was asked."""

    TARGET = "GraniteServiceVersion20100801.GetMetricData"

    def __init__(self, script):
        self.script, self.asked = list(script), []

    def __call__(self, request):
        import json

        from werkzeug import Response

        assert request.headers["X-Amz-Target"] == self.TARGET
        self.asked.append(json.loads(request.data))
        status, body = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return Response(json.dumps(body), status=status, content_type="application/x-amz-json-1.0")


THROTTLED = (400, {"__type": "Throttling", "message": "Rate exceeded"})


def test_throttling_and_a_5xx_are_retried_and_an_api_that_keeps_throttling_stops_the_partition(httpserver, aws_credentials, monkeypatch):
    from botocore.config import Config

    from polo_pipelines.sources.cloudwatch import source as cw_source
    from polo_pipelines.sources.http import SourceUnavailable

    day = dt.datetime.combine(DAYS[0], dt.time(), tzinfo=dt.UTC)
    answer = {
        "MetricDataResults": [
            {"Id": "q0", "Label": "BytesInFromSource", "Timestamps": [day.timestamp()], "Values": [210 * GB], "StatusCode": "Complete"}
        ]
    }
    api = GetMetricData([THROTTLED, (503, {"__type": "ServiceUnavailable"}), (200, answer)])
    httpserver.expect_request("/", method="POST").respond_with_handler(api)
    source = CloudWatchSource(enabled=True, endpoint_url=httpserver.url_for(""))
    got = source.collect(DAYS[0], DAYS[1], [(NAT, "ec2:natgateway")])
    assert len(api.asked) == 3  # the throttle and the 5xx retried by the client, then the answer
    assert got.events[["resource_arn", "event_action", "value"]].values.tolist() == [[NAT, "bytes processed", 210 * GB]]

    monkeypatch.setattr(cw_source, "RETRIES", Config(retries={"mode": "standard", "total_max_attempts": 3}))
    httpserver.clear()
    api = GetMetricData([THROTTLED])
    httpserver.expect_request("/", method="POST").respond_with_handler(api)
    with pytest.raises(SourceUnavailable) as err:
        source.collect(DAYS[0], DAYS[1], [(NAT, "ec2:natgateway")])
    assert len(api.asked) == 3
    assert str(err.value) == (
        f"cloudwatch GetMetricData us-east-1 (queries 1..2): Throttling after 3 attempt(s) (source cloudwatch, partition {DAYS[0]})"
    )
