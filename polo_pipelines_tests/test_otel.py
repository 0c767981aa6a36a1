"""OTLP/HTTP received by Polo: a service instrumented with the real OpenTelemetry SDK exports to the receiver (a real
server) unchanged, in protobuf, gzip'd or not; the documented JSON encoding too; only what attribution needs is
stored; a malformed, oversized or unauthorised payload is refused and nothing of it is written."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from polo_pipelines.sources.otel import receiver
from polo_pipelines.store import polo_store
from polo_pipelines.store.shared import SharedStore

from .test_web import Served

SECRETS = ("Bearer sk-PLANTED-TOKEN-123", "password=PlantedDbPassword!", "PlantedBody: card 4111111111111111", "planted-cookie=abc")


@pytest.fixture
def otlp(dsn):
    shared = SharedStore(dsn, idle_s=0.2)
    served = Served(receiver.create_app(dsn, token="", shared=shared))
    yield served, dsn
    served.stop()
    shared.close()


def stored(dsn: str):
    with polo_store(dsn, reader=True) as store:
        return store.query_df(
            "SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, SpanAttributes,"
            " Duration, StatusCode, Timestamp FROM polo.otel_traces ORDER BY Timestamp"
        )


def all_text(dsn: str) -> str:
    with polo_store(dsn, reader=True) as store:
        rows = store.query_rows("SELECT * FROM polo.otel_traces")
    return json.dumps([[str(v) for v in row] for row in rows])


def sdk_provider(url: str, compression=None):
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.version": "1.4.2",
            "deployment.environment": "prod",
            "host.type": "m5.xlarge",
            "host.id": "i-0abc",
            "cloud.provider": "aws",
            "cloud.region": "us-east-1",
            "process.command_args": SECRETS[2],  # not needed to price a span: dropped
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(
        endpoint=f"{url}/v1/traces", compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_the_sdks_own_exporter_writes_the_spans_with_only_what_attribution_needs(otlp, compression):
    from opentelemetry.trace import SpanKind, Status, StatusCode

    served, dsn = otlp
    provider = sdk_provider(served.url, compression)
    tracer = provider.get_tracer("polo.test", "0.1")
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as outer:
        outer.set_attribute("http.request.header.authorization", SECRETS[0])
        outer.set_attribute("http.request.body", SECRETS[2])
        with tracer.start_as_current_span("SELECT orders") as query:
            query.set_attribute("db.statement", f"SELECT * FROM users WHERE {SECRETS[1]}")
            query.set_attribute("http.request.header.cookie", SECRETS[3])
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("gen_ai.usage.input_tokens", 1200)
            llm.set_attribute("gen_ai.usage.output_tokens", 350)
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_status(Status(StatusCode.ERROR, "rate limited"))
    assert provider.force_flush()
    outer_id = format(outer.get_span_context().span_id, "016x")
    trace_id = format(outer.get_span_context().trace_id, "032x")
    provider.shutdown()

    found = stored(dsn)
    assert sorted(found["SpanName"]) == ["POST /checkout", "SELECT orders", "chat gpt-4o"]
    assert set(found["TraceId"]) == {trace_id} and set(found["ServiceName"]) == {"checkout"} and set(found["ScopeName"]) == {"polo.test"}
    by = found.set_index("SpanName")
    assert by.loc["POST /checkout", "SpanId"] == outer_id and by.loc["POST /checkout", "ParentSpanId"] == ""
    assert by.loc["SELECT orders", "ParentSpanId"] == outer_id and by.loc["POST /checkout", "SpanKind"] == "Server"
    assert dict(by.loc["chat gpt-4o", "SpanAttributes"]) == {
        "gen_ai.usage.input_tokens": "1200",
        "gen_ai.usage.output_tokens": "350",
        "gen_ai.request.model": "gpt-4o",
    }
    assert by.loc["chat gpt-4o", "StatusCode"] == "Error" and all(d > 0 for d in found["Duration"])
    resource = dict(by.loc["SELECT orders", "ResourceAttributes"])
    assert resource["host.type"] == "m5.xlarge" and resource["deployment.environment"] == "prod" and resource["service.version"] == "1.4.2"
    assert "process.command_args" not in resource and dict(by.loc["SELECT orders", "SpanAttributes"]) == {}
    text = all_text(dsn)
    for secret in SECRETS:
        assert secret not in text


def otlp_json(trace_id: str = "5b8efff798038103d269b633813fc60c", span_id: str = "eee19b7ec3c1b174") -> dict:
    """One span in the OTLP/JSON encoding as the specification shows it (hex ids, int64 as strings, enums as numbers)."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "billing"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual", "version": "1.0"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "invoice.render",
                                "kind": 1,
                                "startTimeUnixNano": "1765000000000000000",
                                "endTimeUnixNano": "1765000000250000000",
                                "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}}],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_the_json_encoding_gzip_or_not(otlp):
    served, dsn = otlp
    plain = requests.post(served.url + "/v1/traces", json=otlp_json(), timeout=30)
    assert plain.status_code == 200 and plain.json() == {}
    packed = requests.post(
        served.url + "/v1/traces",
        data=gzip.compress(json.dumps(otlp_json(span_id="aaa19b7ec3c1b174")).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert packed.status_code == 200
    found = stored(dsn)
    assert list(found["SpanId"]) == ["eee19b7ec3c1b174", "aaa19b7ec3c1b174"] or sorted(found["SpanId"]) == [
        "aaa19b7ec3c1b174",
        "eee19b7ec3c1b174",
    ]
    assert set(found["Duration"]) == {250_000_000} and set(found["SpanKind"]) == {"Internal"} and set(found["StatusCode"]) == {"Ok"}
    assert str(found["Timestamp"][0]).startswith("2025-12-06 05:46:40")


@pytest.mark.parametrize(
    "body, headers, status, said",
    [
        (b"\x0a\xff\xff\xff", {"Content-Type": "application/x-protobuf"}, 400, "not an OTLP ExportTraceServiceRequest in protobuf"),
        (b"{not json", {"Content-Type": "application/json"}, 400, "not JSON"),
        (
            json.dumps({"resourceSpans": "nope"}).encode(),
            {"Content-Type": "application/json"},
            400,
            "not an OTLP ExportTraceServiceRequest in JSON",
        ),
        (json.dumps(otlp_json(trace_id="00" * 16)).encode(), {"Content-Type": "application/json"}, 400, "traceId must be 16 bytes"),
        (json.dumps(otlp_json(span_id="abc")).encode(), {"Content-Type": "application/json"}, 400, "not an OTLP"),
        (gzip.compress(b"{}")[:-6], {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 400, "not a whole gzip body"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type must be"),
        (b"x" * (receiver.MAX_BODY + 1), {"Content-Type": "application/x-protobuf"}, 413, "over"),
        (gzip.compress(b" " * (receiver.MAX_BODY + 10)), {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 413, "unpacked"),
    ],
)
def test_a_bad_payload_is_refused_with_the_reason_and_nothing_is_written(otlp, body, headers, status, said):
    served, dsn = otlp
    answer = requests.post(served.url + "/v1/traces", data=body, headers=headers, timeout=60)
    assert answer.status_code == status
    if headers["Content-Type"] == "application/json":
        assert said in answer.json()["message"]
    elif status == 400 or status == 413:
        from google.rpc import status_pb2

        assert said in status_pb2.Status.FromString(answer.content).message
    else:
        assert said in answer.text
    assert stored(dsn).empty


def test_an_exposed_receiver_takes_its_token(dsn):
    shared = SharedStore(dsn, idle_s=0.2)
    served = Served(receiver.create_app(dsn, token="otlp-Secret-77", shared=shared))
    try:
        refused = requests.post(served.url + "/v1/traces", json=otlp_json(), timeout=30)
        assert refused.status_code == 401 and "otlp-Secret-77" not in refused.text
        taken = requests.post(served.url + "/v1/traces", json=otlp_json(), headers={"Authorization": "Bearer otlp-Secret-77"}, timeout=30)
        assert taken.status_code == 200
    finally:
        served.stop()
        shared.close()
    assert len(stored(dsn)) == 1


def test_the_receiver_is_not_exposed_without_a_token(polo_home):
    import subprocess
    import sys

    refused = subprocess.run(
        [sys.executable, "-m", "polo_pipelines.cli.main", "otlp", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0 and "set POLO_OTLP_TOKEN first" in refused.stdout + refused.stderr
