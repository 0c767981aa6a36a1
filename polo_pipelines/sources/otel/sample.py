"""The sample world's services, instrumented with the OpenTelemetry SDK and exporting over OTLP/HTTP to Polo.

Three services run on two of the sample world's production instances (``gamma-prod-1``), through the afternoon of
its last day (07:00-09:00 UTC, before the sample world's "now", 22:00 in Melbourne): ``storefront`` (``GET /products``, and ``POST /checkout`` with its ``SELECT orders``),
``search`` (``GET /search``) and ``assistant`` (``POST /summarize``, which asks gpt-4o and reports its tokens in
``gen_ai.usage.*``). From 08:00 to 08:15 the assistant's answer parser rejects the model's answers, and a retry loop
asks again, up to eight times a request: one operation's cost multiplies inside one 15-minute window. The clock is
the sample world's (each span's start and end given to the SDK), the spans are the SDK's own, exported by its
OTLP/HTTP exporter to Polo's receiver.

The sample server answers what the OTel source asks: the AWS Price List (``GetProducts``) for the world's instance
types, and a throttle endpoint (the design's "enforcer") that a rule's action webhook calls.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from polo_pipelines.sources.sample.server import Reply, Request, SampleServer

if TYPE_CHECKING:
    from polo_pipelines.sources.sample.platforms import PlatformSample

CLUSTER = "gamma-prod-1"
START_HOUR, END_HOUR = 7, 9  # the hours the services run, UTC, on the world's last day
STORM = (dt.time(8, 0), dt.time(8, 15))  # the retry loop's window
MAX_TRIES = 8
MODEL = "gpt-4o"
PRICE_LIST_VERSION = "20261201000000"


@dataclass
class OtelSample:
    """The services' day and hosts, and what the throttle endpoint was asked."""

    day: dt.date
    hosts: list[tuple[str, str]]  # (instance id, instance type)
    prices: dict[str, float]  # instance type -> USD an hour
    throttled: list[dict] = field(default_factory=list)

    def price_list(self, request: Request) -> Reply:
        """``GetProducts`` as the Price List answers it: one entry per matching instance type, a JSON string each."""
        body = request.body if isinstance(request.body, dict) else {}
        if request.headers.get("x-amz-target") != "AWSPriceListService.GetProducts" or body.get("ServiceCode") != "AmazonEC2":
            return Reply(400, {"__type": "InvalidParameterException", "message": "the sample answers AmazonEC2 GetProducts"})
        wanted = {f.get("Field"): f.get("Value") for f in body.get("Filters") or []}
        kind = wanted.get("instanceType")
        entries = [price_list_entry(kind, wanted.get("regionCode", ""), self.prices[kind])] if kind in self.prices else []
        return Reply(200, {"FormatVersion": "aws_v1", "PriceList": entries})

    def throttle(self, request: Request) -> Reply:
        self.throttled.append(request.body if isinstance(request.body, dict) else {})
        return Reply(202, {"throttled": (request.body or {}).get("node") or (request.body or {}).get("resource")})


def price_list_entry(instance_type: str, region: str, usd: float, version: str = PRICE_LIST_VERSION) -> str:
    """One PriceList item in the documented shape: a JSON document as a string, its On-Demand price per hour."""
    sku = "SAMPLE" + instance_type.replace(".", "").upper()
    dimension = {
        "unit": "Hrs",
        "pricePerUnit": {"USD": f"{usd:.10f}"},
        "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
        "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
    }
    term = {"offerTermCode": "JRTCKXETXF", "sku": sku, "priceDimensions": {dimension["rateCode"]: dimension}}
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "sku": sku,
                "attributes": {"instanceType": instance_type, "regionCode": region},
            },
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": term}},
            "version": version,
            "publicationDate": "2026-12-01T00:00:00Z",
        }
    )


def sample_data(world: PlatformSample) -> OtelSample:
    from polo_pipelines.sources.sample.world import INSTANCE_PRICES, SampleWorld

    aws = SampleWorld(world.end, seed=world.seed)
    day = world.end - dt.timedelta(days=1)
    index = aws.day_index(day)
    hosts = [(r.rid, r.size) for r in aws.resources if r.kind == "instance" and r.cluster == CLUSTER and r.alive(index)][:2]
    return OtelSample(day, hosts, dict(INSTANCE_PRICES))


def add_routes(server: SampleServer, world: PlatformSample) -> None:
    server.route("POST", r"/otel/pricing/?", lambda request: world.data("otel").price_list(request))
    server.route("POST", r"/otel/throttle", lambda request: world.data("otel").throttle(request))


def sample_source():
    """The OTel source pricing the spans Polo received, the Price List being the sample server's (signed with the
    sample's own key: the real client signs every request)."""
    import boto3

    from polo_pipelines.sources.otel.source import PRICE_LIST_REGION, RETRIES, OtelSource
    from polo_pipelines.sources.sample.platforms import serve_sample

    class SampleOtelSource(OtelSource):
        def pricing(self):
            return boto3.client(
                "pricing",
                region_name=PRICE_LIST_REGION,
                config=RETRIES,
                endpoint_url=self.pricing_endpoint_url,
                aws_access_key_id="SAMPLEKEY",
                aws_secret_access_key="sample-not-a-secret",
            )

    _, server = serve_sample()
    return SampleOtelSource(enabled=True, pricing_endpoint_url=f"{server.url}/otel/pricing")


def throttle_url() -> str:
    """The sample server's throttle endpoint: where the sample world's action webhook points."""
    from polo_pipelines.sources.sample.platforms import serve_sample

    _, server = serve_sample()
    return f"{server.url}/otel/throttle"


# ------------------------------------------------------------------ the services


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1e9)


class Services:
    """The sample services, one SDK tracer provider each (its resource: service, environment, host, cloud)."""

    def __init__(self, endpoint: str, sample: OtelSample, seed: int = 0):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.sample, self.rng = sample, random.Random(f"otel:{sample.day}:{seed}")
        (first, first_type), (second, second_type) = sample.hosts[0], sample.hosts[-1]
        placed = {"storefront": (first, first_type), "search": (second, second_type), "assistant": (second, second_type)}
        self.providers, self.tracers = {}, {}
        for name, (host, kind) in placed.items():
            resource = Resource.create(
                {
                    "service.name": name,
                    "service.version": "2026.12.1",
                    "deployment.environment.name": "prod",
                    "host.id": host,
                    "host.type": kind,
                    "cloud.provider": "aws",
                    "cloud.region": "us-east-1",
                    "cloud.account.id": "111111111111",
                }
            )
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=30), max_queue_size=100_000, max_export_batch_size=4096)
            )
            self.providers[name], self.tracers[name] = provider, provider.get_tracer("polo.sample")

    def span(self, service: str, name: str, start: dt.datetime, seconds: float, parent=None, **attributes):
        from opentelemetry import trace

        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracers[service].start_span(name, context=context, start_time=_ns(start), attributes=attributes or None)
        span.end(end_time=_ns(start + dt.timedelta(seconds=seconds)))
        return span

    def request(self, service: str, name: str, start: dt.datetime, seconds: float, children=()):
        """A server span and its children (name, offset s, seconds, attributes), the children ending first."""
        from opentelemetry import trace

        span = self.tracers[service].start_span(name, start_time=_ns(start), kind=trace.SpanKind.SERVER)
        for child, offset, length, attributes in children:
            self.span(service, child, start + dt.timedelta(seconds=offset), length, parent=span, **attributes)
        span.end(end_time=_ns(start + dt.timedelta(seconds=seconds)))

    def run(self) -> int:
        """The two hours' requests, minute by minute; returns how many spans were made."""
        made = 0
        moment = dt.datetime.combine(self.sample.day, dt.time(START_HOUR), tzinfo=dt.UTC)
        end = moment.replace(hour=END_HOUR)
        rng = self.rng
        while moment < end:
            storm = STORM[0] <= moment.time() < STORM[1]
            for _ in range(rng.randint(50, 70)):  # storefront: browsing
                at = moment + dt.timedelta(seconds=rng.uniform(0, 59))
                self.request("storefront", "GET /products", at, rng.uniform(0.05, 0.4))
                made += 1
            for _ in range(rng.randint(8, 14)):  # storefront: checkouts, with their query
                at = moment + dt.timedelta(seconds=rng.uniform(0, 55))
                query = rng.uniform(0.05, 0.3)
                self.request("storefront", "POST /checkout", at, query + rng.uniform(0.2, 1.2), [("SELECT orders", 0.02, query, {})])
                made += 2
            for _ in range(rng.randint(30, 45)):  # search
                self.request("search", "GET /search", moment + dt.timedelta(seconds=rng.uniform(0, 59)), rng.uniform(0.1, 2.0))
                made += 1
            for _ in range(rng.randint(3, 5)):  # the assistant: one model call a request, until the storm
                at = moment + dt.timedelta(seconds=rng.uniform(0, 40))
                tries = MAX_TRIES if storm else 1
                calls, offset = [], 0.05
                for _ in range(tries):
                    length = rng.uniform(1.5, 3.0)
                    tokens = {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": MODEL,
                        "gen_ai.usage.input_tokens": rng.randint(1800, 2400),
                        "gen_ai.usage.output_tokens": rng.randint(400, 650),
                    }
                    calls.append((f"chat {MODEL}", offset, length, tokens))
                    offset += length + 0.05
                self.request("assistant", "POST /summarize", at, offset + 0.1, calls)
                made += 1 + tries
            moment += dt.timedelta(minutes=1)
        return made

    def close(self) -> None:
        for provider in self.providers.values():
            provider.force_flush(timeout_millis=60_000)
            provider.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def receiver(dsn: str | None = None) -> Iterator[str]:
    """Polo's OTLP/HTTP receiver on a free loopback port for the block: its traces endpoint."""
    import uvicorn

    from polo_pipelines.sources.otel.receiver import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(dsn, token=""), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="polo-otlp", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the OTLP receiver did not start")
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1/traces"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def export_afternoon(sample: OtelSample, dsn: str | None = None) -> int:
    """Run the services through their two hours, exporting to a receiver of Polo's own; the spans made."""
    with receiver(dsn) as endpoint:
        services = Services(endpoint, sample)
        try:
            return services.run()
        finally:
            services.close()
