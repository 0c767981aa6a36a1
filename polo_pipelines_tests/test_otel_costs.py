"""Spans priced into 15-minute cost events per service and operation: a host's bucket shared by the spans running
on it at once, a host with time to spare charged per second, LLM tokens by model, explicit unpriced lines, flagged
durations never priced."""

from __future__ import annotations

import datetime as dt

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from polo_pipelines.sources.otel import costs, spans
from polo_pipelines.sources.otel.prices import Price

T0 = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 5, 10, 20, tzinfo=dt.UTC)


def kv(key: str, value) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value))


def span(trace: int, sid: int, name: str, start_s: float, seconds: float, parent: int = 0, **attributes) -> Span:
    begin = int((T0.timestamp() + start_s) * 1e9)
    return Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=sid.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        start_time_unix_nano=begin,
        end_time_unix_nano=begin + int(seconds * 1e9),
        attributes=[kv(k.replace("__", "."), v) for k, v in attributes.items()],
    )


def service(name: str, resource: dict, *members: Span) -> ResourceSpans:
    return ResourceSpans(
        resource={"attributes": [kv("service.name", name), *(kv(k, v) for k, v in resource.items())]},
        scope_spans=[ScopeSpans(spans=list(members))],
    )


HOST_A = {
    "host.id": "i-a",
    "host.type": "m5.xlarge",
    "cloud.provider": "aws",
    "cloud.region": "us-east-1",
    "deployment.environment": "prod",
}
BOX = {"host.id": "box-1", "host.type": "build-box", "deployment.environment": "ci"}
ODD = {"host.id": "i-odd", "host.type": "weird.9xlarge", "cloud.provider": "aws", "cloud.region": "us-east-1"}

HOSTS = {
    "aws:ec2:us-east-1:m5.xlarge": Price("aws:ec2:us-east-1:m5.xlarge", 0.192, "hour", "price-list", "v1", NOW),
    "file:host:build-box": Price("file:host:build-box", 0.85, "hour", "file", "f1", NOW),
}
CALLS = {
    "file:gen_ai:gpt-4o:input": Price("file:gen_ai:gpt-4o:input", 2.5e-6, "token", "file", "f1", NOW),
    "file:gen_ai:gpt-4o:output": Price("file:gen_ai:gpt-4o:output", 1e-5, "token", "file", "f1", NOW),
}


def test_a_window_of_spans_priced_per_service_and_operation(store):
    request = ExportTraceServiceRequest(
        resource_spans=[
            service("checkout", HOST_A, span(1, 1, "POST /checkout", 10, 600), span(1, 2, "SELECT orders", 20, 200, parent=1)),
            service("search", HOST_A, span(2, 3, "GET /search", 0, 900)),
            service("batch", BOX, span(3, 4, "job", 30, 360), span(3, 5, "job", 40, -5)),
            service(
                "assistant",
                {},
                span(
                    4, 6, "chat", 5, 2, gen_ai__request__model="gpt-4o", gen_ai__usage__input_tokens=1200, gen_ai__usage__output_tokens=350
                ),
            ),
            service("legacy", ODD, span(5, 7, "crunch", 50, 60)),
        ]
    )
    store.insert_df("polo.otel_traces", spans.rows(request))
    asked = []

    def host_prices(keys):
        asked.append(keys)
        return {k: HOSTS[k] for k in keys if k in HOSTS}

    found = costs.window(store, T0, T0 + costs.BUCKET, host_prices, CALLS).set_index("resource_arn")
    assert asked == [["aws:ec2:us-east-1:m5.xlarge", "aws:ec2:us-east-1:weird.9xlarge", "file:host:build-box"]]
    bucket_cost = 0.192 * 0.25  # host A ran 1,500 s of spans' own time in 900 s: its bucket is shared out
    assert found.loc["otel:checkout/POST /checkout", "value"] == pytest.approx(bucket_cost * 400 / 1500)  # 600 s less its child's 200
    assert found.loc["otel:checkout/SELECT orders", "value"] == pytest.approx(bucket_cost * 200 / 1500)
    assert found.loc["otel:search/GET /search", "value"] == pytest.approx(bucket_cost * 900 / 1500)
    on_a = ["otel:checkout/POST /checkout", "otel:checkout/SELECT orders", "otel:search/GET /search"]
    assert found.loc[on_a, "value"].sum() == pytest.approx(bucket_cost)
    job = found.loc["otel:batch/job"]
    assert job["value"] == pytest.approx(360 * 0.85 / 3600)  # a host with time to spare: its own time at the hourly price
    assert dict(job["properties"])["spans"] == "1" and dict(job["properties"])["flagged_spans"] == "1"  # the negative one not priced
    chat = found.loc["otel:assistant/chat"]
    assert chat["value"] == pytest.approx(1200 * 2.5e-6 + 350 * 1e-5) and chat["event_action"] == "unpriced"
    assert dict(chat["properties"])["unpriced"] == "no host attributes (host.type, cloud.region)"
    legacy = found.loc["otel:legacy/crunch"]
    assert legacy["value"] == 0 and legacy["event_action"] == "unpriced"
    assert dict(legacy["properties"])["unpriced"] == "no price for host aws:ec2:us-east-1:weird.9xlarge"
    first = dict(found.loc["otel:checkout/POST /checkout", "properties"])
    assert first["basis"] == "estimated" and first["tag:service"] == "checkout" and first["tag:environment"] == "prod"
    assert set(found["collector"]) == {"cost_otel"} and set(found["event_time"]) == {T0.replace(tzinfo=None)}


def test_an_empty_window_has_no_events(store):
    assert costs.window(store, T0, T0 + costs.BUCKET, lambda keys: {}, CALLS).empty


def test_the_collector_asset_prices_a_days_spans_into_the_store(dsn, httpserver, aws_credentials):
    """The day's spans priced by the collector asset: the instance's price asked of the Price List (a local server in
    the documented shape) and kept, the build box's from the price file, the events written as collector cost_otel."""
    import json

    import dagster as dg

    from polo_pipelines.defs.collection.assets import COLLECTORS
    from polo_pipelines.defs.store.resources import ClickHouseResource
    from polo_pipelines.sources.otel.source import OtelSource
    from polo_pipelines.store import polo_store

    from .test_otel_prices import entry

    request = ExportTraceServiceRequest(
        resource_spans=[
            service("search", HOST_A, span(2, 3, "GET /search", 0, 450)),
            service("batch", BOX, span(3, 4, "job", 30, 360)),
        ]
    )
    with polo_store(dsn) as store:
        store.insert_df("polo.otel_traces", spans.rows(request))
    httpserver.expect_request("/", method="POST").respond_with_json(
        {"FormatVersion": "aws_v1", "PriceList": [entry("m5.xlarge", "0.1920000000")]}, content_type="application/x-amz-json-1.1"
    )
    resources = {"clickhouse": ClickHouseResource(dsn=dsn), "otel": OtelSource(enabled=True, pricing_endpoint_url=httpserver.url_for(""))}
    assert dg.materialize([COLLECTORS["otel"]], partition_key=str(T0.date()), resources=resources).success
    with polo_store(dsn) as store:
        found = store.query_df(
            "SELECT resource_arn, value, properties['basis'] AS basis FROM polo.resource_events WHERE collector = 'cost_otel' ORDER BY resource_arn"
        )
        kept = store.query_rows("SELECT key, usd, source, version FROM polo.prices")
    assert found["resource_arn"].tolist() == ["otel:batch/job", "otel:search/GET /search"] and set(found["basis"]) == {"estimated"}
    assert found["value"].tolist() == pytest.approx([360 * 0.85 / 3600, 450 * 0.192 / 3600])
    assert kept == [("aws:ec2:us-east-1:m5.xlarge", 0.192, "price-list", "20261201000000")]
    assert json.loads(httpserver.log[0][0].data)["ServiceCode"] == "AmazonEC2"

    # the service hierarchy: environment → service → operation, so the drill-down works on the spans' costs
    from polo_pipelines.hierarchy import ancestry as hy

    with polo_store(dsn) as store:
        hy.refresh(store, hy.load())
        chain = store.query_df(
            "SELECT ancestor_id FROM polo.resource_ancestry WHERE hierarchy = 'service' AND resource_arn = 'otel:search/GET /search' "
            "ORDER BY depth"
        )["ancestor_id"].tolist()
    assert chain == ["environment:prod", "service:prod/search", "operation:prod/search/GET /search"]


def test_a_collectors_own_table_is_read_in_place(store):
    """Spans an OpenTelemetry Collector's ClickHouse exporter wrote to its own table (its DDL, another database) are
    priced where they are; a name that is not a table is refused before any SQL."""
    from polo_pipelines.errors import PoloInputError

    store.command("CREATE DATABASE IF NOT EXISTS otel")
    store.command("CREATE TABLE otel.otel_traces AS polo.otel_traces")
    store.insert_df(
        "otel.otel_traces", spans.rows(ExportTraceServiceRequest(resource_spans=[service("batch", BOX, span(3, 4, "job", 30, 360))]))
    )
    found = costs.window(store, T0, T0 + costs.BUCKET, lambda keys: {k: HOSTS[k] for k in keys if k in HOSTS}, CALLS, "otel.otel_traces")
    assert found["resource_arn"].tolist() == ["otel:batch/job"] and found["value"].tolist() == pytest.approx([360 * 0.85 / 3600])
    assert costs.window(store, T0, T0 + costs.BUCKET, lambda keys: {}, CALLS).empty  # Polo's own table holds nothing
    with pytest.raises(PoloInputError, match="not a table name"):
        costs.window(store, T0, T0 + costs.BUCKET, lambda keys: {}, CALLS, "otel_traces; DROP TABLE polo.resource_events")
