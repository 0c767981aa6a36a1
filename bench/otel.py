"""OpenTelemetry for `make bench`: OTLP/HTTP spans into the embedded store (issue: >= 50,000 spans/s) and a 15-minute
window of 10M spans priced (<= 5 s, peak RSS <= 2 GiB).

Ingest: ``polo otlp`` in a process of its own; the client posts 40 prebuilt protobuf requests of 5,000 spans each
(built first, not timed; resource attributes as an instrumented service sends them, plus span attributes the
receiver drops) from 4 threads. Pricing: 10M spans of one window (50 services, 200 operations, 1,000 hosts, one span
in four a root, three children each) generated in SQL, then priced by the collector's own ``costs.window`` in a fresh
process, its peak RSS its own.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

T0 = dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)
REQUESTS, SPANS_PER_REQUEST = 40, 5_000
WINDOW_SPANS = 10_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payload(n: int, seed: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def kv(k: str, v: str) -> KeyValue:
        return KeyValue(key=k, value=AnyValue(string_value=v))

    rng = random.Random(seed)
    start = int(time.time() * 1e9)
    members = []
    for i in range(n):
        begin = start + rng.randrange(10**11)
        members.append(
            Span(
                trace_id=rng.getrandbits(128).to_bytes(16, "big"),
                span_id=(rng.getrandbits(63) + 1).to_bytes(8, "big"),
                name=f"GET /api/{i % 40}",
                kind=2,
                start_time_unix_nano=begin,
                end_time_unix_nano=begin + rng.randrange(1, 10**8),
                attributes=[kv("http.route", f"/api/{i % 40}"), kv("http.request.method", "GET"), kv("url.full", "https://shop/x?q=1")],
            )
        )
    attributes = {
        "service.name": f"svc-{seed % 10}",
        "service.version": "2.1.0",
        "deployment.environment": "prod",
        "host.id": f"i-{seed % 50:08x}",
        "host.type": "m5.xlarge",
        "cloud.provider": "aws",
        "cloud.region": "us-east-1",
        "process.command_args": "server --port 8080",
    }
    resource_ = {"attributes": [kv(k, v) for k, v in attributes.items()]}
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(resource=resource_, scope_spans=[ScopeSpans(spans=members)])])
    return request.SerializeToString()


def ingest(folder: Path) -> dict:
    bodies = [payload(SPANS_PER_REQUEST, seed) for seed in range(REQUESTS + 1)]
    port = _free_port()
    env = {**os.environ, "POLO_HOME": str(folder), "POLO_CLICKHOUSE_DSN": f"chdb://{folder / 'clickhouse'}"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "polo"), "otlp", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    try:
        for _ in range(600):
            try:
                requests.post(url, data=bodies[0], headers=headers, timeout=60).raise_for_status()  # warm-up: store opened
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda b: requests.post(url, data=b, headers=headers, timeout=120).status_code, bodies[1:]))
        seconds = time.perf_counter() - t
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert set(answers) == {200}, answers
    spans = REQUESTS * SPANS_PER_REQUEST
    return {"spans": spans, "seconds": round(seconds, 2), "spans_per_s": round(spans / seconds), "target_spans_per_s": 50_000}


def generate_window(dsn: str, n: int) -> None:
    from polo_pipelines.store import polo_store

    with polo_store(dsn) as store:
        store.command(
            f"""
            INSERT INTO polo.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName,
                                          ResourceAttributes, ScopeName, SpanAttributes, Duration, StatusCode)
            SELECT toDateTime64('{T0:%Y-%m-%d %H:%M:%S}', 9) + toIntervalMillisecond(number % 899000),
                   hex(intHash64(intDiv(number, 4))), hex(intHash64(number)),
                   if(number % 4 = 0, '', hex(intHash64(number - number % 4))),
                   concat('op-', toString(number % 200)), 'Server', concat('svc-', toString(number % 50)),
                   map('host.id', concat('i-', toString(number % 1000)), 'host.type', 'm5.xlarge', 'cloud.provider', 'aws',
                       'cloud.region', 'us-east-1', 'deployment.environment', 'prod', 'service.version', '2.1.0'),
                   'bench', map(), 100000000 + number % 50000000, 'Ok'
            FROM numbers({n})
            """
        )
        store.command("OPTIMIZE TABLE polo.otel_traces FINAL")


def price_phase(dsn: str) -> dict:
    """The window priced in this process (a fresh one): time and peak RSS."""
    from polo_pipelines.sources.otel import costs
    from polo_pipelines.sources.otel.prices import Price
    from polo_pipelines.store import polo_store

    host = {"aws:ec2:us-east-1:m5.xlarge": Price("aws:ec2:us-east-1:m5.xlarge", 0.192, "hour", "price-list", "bench", T0)}
    with polo_store(dsn) as store:
        t = time.perf_counter()
        events = costs.window(store, T0, T0 + costs.BUCKET, lambda keys: host, {})
        seconds = time.perf_counter() - t
    return {
        "events": len(events),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="polo-bench-otel-") as tmp:
        folder = Path(tmp)
        received = ingest(folder / "ingest")
        dsn = f"chdb://{folder / 'window' / 'clickhouse'}"
        t = time.perf_counter()
        generate_window(dsn, WINDOW_SPANS)
        generate_s = time.perf_counter() - t
        runs = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-m", "bench.otel", "--price", dsn], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = sorted(runs, key=lambda r: r["seconds"])[1]
    return {
        "ingest": received,
        "window": {
            "spans": WINDOW_SPANS,
            "generate_s": round(generate_s, 1),
            **median,
            "runs_s": [r["seconds"] for r in runs],
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
            "target_s": 5.0,
            "target_peak_mib": 2048,
        },
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--price"]:
        print(json.dumps(price_phase(sys.argv[2])))
    else:
        print(json.dumps(run()))
