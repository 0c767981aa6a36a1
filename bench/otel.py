"""OpenTelemetry for `make bench`: OTLP/HTTP spans into the embedded store (issue: >= 50,000 spans/s), a 15-minute
window of 10M spans priced and written (<= 5 s, peak RSS <= 2 GiB), and a day of 100M spans on 1,000 hosts reconciled
to the hosts' bills (<= 30 s).

Ingest: ``polo otlp`` in a process of its own; the client posts 40 prebuilt protobuf requests of 5,000 spans each
(built first, not timed; resource attributes as an instrumented service sends them, plus span attributes the
receiver drops) from 4 threads. Pricing: 10M spans of one window (50 services, 200 operations, 1,000 hosts, one span
in four a root, three children each) generated in SQL, then priced by the collector's own ``costs.window`` and written
as the 15-minute asset writes it (``replace_days`` of the window), in a fresh process, its peak RSS its own.

Reconciliation: 100M spans over one day (1,000 hosts, one operation each, traces of four spans), generated in SQL
10M at a time; the day's 96 windows priced and written as the 15-minute runs would (setup, not timed; their median
reported); the 1,000 instances' bill for the day loaded as the AWS collector loads it. Timed, in a fresh process: the
daily collector's whole work for the day (``OtelSource.needs``: the day's lines read back, each bucket's span count
compared with what its lines were priced from, the bills read, the day reconciled; then its write), the sum of
services and idle checked against the bill.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.memory import peak_rss_mib

T0 = dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)
REQUESTS, SPANS_PER_REQUEST = 40, 5_000
WINDOW_SPANS = 10_000_000
DAY_SPANS, DAY_HOSTS, CHUNK = 100_000_000, 1_000, 10_000_000
DAY = T0.date()


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
        write_window(store, events, T0, T0 + costs.BUCKET)
        seconds = time.perf_counter() - t
    return {
        "events": len(events),
        "seconds": round(seconds, 2),
        "peak_rss_mib": peak_rss_mib(),
    }


def write_window(store, events, start: dt.datetime, end: dt.datetime) -> None:
    """As the 15-minute asset writes a window: its part of the day replaced, the rest kept."""
    from polo_pipelines.sources.otel import costs
    from polo_pipelines.store.events import replace_days

    replace_days(store, events, collector=costs.COLLECTOR, days=[start.date()], source="bench", allow_empty_days=True, within=(start, end))


def generate_day(dsn: str) -> None:
    """DAY_SPANS spans over DAY, in time order, traces of four spans together, 10M rows an insert."""
    from polo_pipelines.store import polo_store

    with polo_store(dsn) as store:
        for offset in range(0, DAY_SPANS, CHUNK):
            store.command(
                f"""
                INSERT INTO polo.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName,
                                              ResourceAttributes, ScopeName, SpanAttributes, Duration, StatusCode)
                SELECT toDateTime64('{DAY:%Y-%m-%d} 00:00:00', 9) + toIntervalMillisecond(intDiv(intDiv(number, 4) * 4 * 86399000, {DAY_SPANS})),
                       hex(intHash64(intDiv(number, 4))), hex(intHash64(number)),
                       if(number % 4 = 0, '', hex(intHash64(number - number % 4))),
                       concat('op-', toString(number % 200)), 'Server', concat('svc-', toString(number % 50)),
                       map('host.id', concat('i-', toString(number % {DAY_HOSTS})), 'host.type', 'm5.xlarge', 'cloud.provider', 'aws',
                           'cloud.region', 'us-east-1', 'deployment.environment', 'prod', 'service.version', '2.1.0'),
                       'bench', map(), 20000000 + number % 30000000, 'Ok'
                FROM numbers({offset}, {CHUNK})
                """
            )


def price_day(dsn: str) -> list[float]:
    """The day's 96 windows priced and written one by one, as the 15-minute runs would: each window's seconds."""
    from polo_pipelines.sources.otel import costs
    from polo_pipelines.sources.otel.prices import Price
    from polo_pipelines.store import polo_store

    host = {"aws:ec2:us-east-1:m5.xlarge": Price("aws:ec2:us-east-1:m5.xlarge", 0.192, "hour", "price-list", "bench", T0)}
    start = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)
    seconds = []
    with polo_store(dsn) as store:
        for i in range(96):
            lo = start + i * costs.BUCKET
            t = time.perf_counter()
            write_window(store, costs.window(store, lo, lo + costs.BUCKET, lambda keys: host, {}), lo, lo + costs.BUCKET)
            seconds.append(time.perf_counter() - t)
    return seconds


def bill_day(dsn: str) -> float:
    """The 1,000 instances' cost for the day, as the AWS collector would load it (a Savings Plan's discount on most)."""
    import pandas as pd

    from polo_pipelines.store import polo_store
    from polo_pipelines.store.events import cost_events, replace_days

    arns = [f"arn:aws:ec2:us-east-1:123456789012:instance/i-{k}" for k in range(DAY_HOSTS)]
    values = [round(0.192 * 24 * (0.72 if k % 4 else 1.0), 6) for k in range(DAY_HOSTS)]
    frame = cost_events(
        resource_arn=arns,
        resource_type="ec2:instance",
        resource_name=[a.rsplit("/", 1)[-1] for a in arns],
        day=pd.to_datetime([DAY] * len(arns)),
        charge_category="Usage",
        value=values,
        billed_cost=values,
        list_cost=values,
        service="AmazonEC2",
        provider="AWS",
        properties=[{}] * len(arns),
        collector="cost_aws",
    )
    with polo_store(dsn) as store:
        replace_days(store, frame, collector="cost_aws", days=[DAY], source="bench")
    return float(sum(values))


def reconcile_phase(dsn: str) -> dict:
    """The daily collector's work for DAY in this process (a fresh one): time, peak RSS, and the sums checked."""
    from polo_pipelines.sources.otel import costs
    from polo_pipelines.sources.otel.source import OtelSource
    from polo_pipelines.store import polo_store
    from polo_pipelines.store.events import replace_days

    source = OtelSource(enabled=True, pricing_endpoint_url="http://127.0.0.1:9")  # every price is cached: never asked
    with polo_store(dsn) as store:
        t = time.perf_counter()
        priced = source.needs(store, DAY, DAY + dt.timedelta(days=1))
        collected = source.collect(DAY, DAY + dt.timedelta(days=1), priced)
        replace_days(store, collected.events, collector=costs.COLLECTOR, days=[DAY], source="bench")
        seconds = time.perf_counter() - t
        ((services, idle, lines),) = store.query_rows(
            "SELECT sumIf(value, event_action != 'idle'), sumIf(value, event_action = 'idle'), count() FROM polo.resource_events "
            "WHERE collector = 'cost_otel' AND toDate(event_time) = {day:Date}",
            {"day": DAY},
        )
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": peak_rss_mib(),
        "lines": int(lines),
        "hosts_reconciled": collected.counts["hosts_reconciled"],
        "buckets_priced_again": collected.counts["buckets_priced"],
        "services_usd": round(float(services), 6),
        "idle_usd": round(float(idle), 6),
    }


def reconciliation(folder: Path) -> dict:
    dsn = f"chdb://{folder / 'day' / 'clickhouse'}"
    t = time.perf_counter()
    generate_day(dsn)
    generate_s = time.perf_counter() - t
    windows = price_day(dsn)
    billed = bill_day(dsn)
    from polo_pipelines.sources.otel.prices import Price, store_prices
    from polo_pipelines.store import polo_store

    with polo_store(dsn) as store:  # the instance type's price, cached as the windows' Price List answer would be
        store_prices(store, [Price("aws:ec2:us-east-1:m5.xlarge", 0.192, "hour", "price-list", "bench", dt.datetime.now(dt.UTC))])
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-m", "bench.otel", "--reconcile", dsn], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = sorted(runs, key=lambda r: r["seconds"])[1]
    return {
        "spans": DAY_SPANS,
        "hosts": DAY_HOSTS,
        "generate_s": round(generate_s, 1),
        "window_median_s": round(sorted(windows)[len(windows) // 2], 2),
        "window_max_s": round(max(windows), 2),
        **median,
        "runs_s": [r["seconds"] for r in runs],
        "billed_usd": round(billed, 6),
        "services_plus_idle_usd": round(median["services_usd"] + median["idle_usd"], 6),
        "target_s": 30.0,
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
        reconciled = reconciliation(folder)
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
        "reconciliation": reconciled,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--price"]:
        print(json.dumps(price_phase(sys.argv[2])))
    elif sys.argv[1:2] == ["--reconcile"]:
        print(json.dumps(reconcile_phase(sys.argv[2])))
    else:
        print(json.dumps(run()))
