"""The spans already in the store, priced: a day's (or a window's) cost events of collector ``cost_otel``."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field

import boto3
import pandas as pd
from botocore.config import Config

from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import env_flag
from polo_pipelines.sources.otel import costs, prices, reconcile
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import day_range
from polo_pipelines.store.storage import open_store, parse_dsn

# Throttling and 5xx are retried by the client, with backoff, eight requests in all
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 8})
PRICE_LIST_REGION = "us-east-1"  # the Price List API answers in us-east-1, eu-central-1 and ap-south-1
MOST_SPANS_A_QUERY = 2_000_000  # consecutive buckets priced in one query while they hold at most this many spans


@dataclass
class Priced:
    """A window's cost events and what each billed host came to."""

    events: pd.DataFrame
    hosts: list[reconcile.HostReconciled] = field(default_factory=list)
    repriced_buckets: int = 0  # 15-minute buckets priced from the spans in this run (the rest were already)


class OtelSource(CostSource):
    """The spans in ``polo.otel_traces`` (POLO_OTEL=1), priced per service and operation."""

    enabled: bool = False
    pricing_endpoint_url: str | None = None
    traces_table: str = "polo.otel_traces"  # or the table an OpenTelemetry Collector writes, read in place
    traces_dsn: str | None = None  # another ClickHouse server holding that table (default: Polo's own store)

    @property
    def configured(self) -> bool:
        return self.enabled

    def pricing(self):
        return boto3.client("pricing", region_name=PRICE_LIST_REGION, config=RETRIES, endpoint_url=self.pricing_endpoint_url)

    def needs(self, store, start: dt.date, end: dt.date) -> Priced:
        """The days' lines, computed in the store: each day's lines as already priced (every 15 minutes), the buckets
        whose spans changed since priced again from the spans, then reconciled to the hosts' bills where they landed."""
        file = prices.load_file()
        client = self.pricing()
        priced = lambda keys: prices.host_prices(store, keys, client, file=file)  # noqa: E731  (the cache: Polo's store)
        with self.traces(store) as traces:
            days, hosts, repriced = [], [], 0
            for day in day_range(start, end):
                lo = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
                hi = lo + dt.timedelta(days=1)
                held = costs.stored_lines(store, lo, hi)
                windows = costs.to_price(costs.span_counts(traces, lo, hi, self.traces_table), held, MOST_SPANS_A_QUERY)
                repriced += sum(int((b - a) / costs.BUCKET) for a, b in windows)
                fresh = [costs.window_lines(traces, a, b, priced, file, self.traces_table) for a, b in windows]
                when = pd.to_datetime(held["bucket"])
                for a, b in windows:
                    held = held[~((when >= pd.Timestamp(a).tz_localize(None)) & (when < pd.Timestamp(b).tz_localize(None)))]
                lines = pd.concat([held, *fresh], ignore_index=True) if fresh else held
                bills = reconcile.billed(store, day, sorted({h for h in lines["host"] if h}))
                lines, reconciled = reconcile.reconcile(lines, bills, day)
                days.append(lines)
                hosts.extend(reconciled)
        return Priced(costs.to_events(pd.concat(days, ignore_index=True)), hosts, repriced)

    def recent(self, store, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
        """The cost events of [start, end) (whole 15-minute buckets) as estimated from its spans now."""
        file = prices.load_file()
        client = self.pricing()
        priced = lambda keys: prices.host_prices(store, keys, client, file=file)  # noqa: E731
        with self.traces(store) as traces:
            return costs.window(traces, start, end, priced, file, self.traces_table)

    @contextlib.contextmanager
    def traces(self, store):
        """Where the spans are: Polo's store, or the ClickHouse server of POLO_OTEL_TRACES_DSN."""
        if not self.traces_dsn:
            yield store
            return
        if parse_dsn(self.traces_dsn).scheme == "chdb":
            raise PoloInputError(
                "POLO_OTEL_TRACES_DSN must be a ClickHouse server (clickhouse://, http(s)://): for a table in Polo's own "
                "store, set POLO_OTEL_TRACES_TABLE alone",
                source="otel",
                field="POLO_OTEL_TRACES_DSN",
            )
        with open_store(self.traces_dsn, reader=True) as traces:
            yield traces

    def collect(self, start: dt.date, end: dt.date, needs: Priced | None = None) -> Collected:
        events = needs.events if needs is not None else costs.to_events(pd.DataFrame(columns=costs.LINE_COLUMNS))
        hosts = needs.hosts if needs is not None else []
        counts = {
            "lines": len(events),
            "buckets_priced": needs.repriced_buckets if needs is not None else 0,
            "hosts_reconciled": len(hosts),
            "hosts_estimated_usd": round(sum(h.estimated for h in hosts), 6),
            "hosts_billed_usd": round(sum(h.actual for h in hosts), 6),
            "idle_usd": round(sum(h.idle for h in hosts), 6),
        }
        return Collected(costs.COLLECTOR, "polo.otel_traces", events, ["polo.otel_traces"], counts)

    def check(self) -> str:
        prices.load_file()
        self.pricing().describe_services(ServiceCode="AmazonEC2", MaxResults=1)
        return "the price file reads, and the Price List answers"


def from_env() -> OtelSource:
    return OtelSource(
        enabled=env_flag("POLO_OTEL"),
        traces_table=costs.traces_table(os.environ.get("POLO_OTEL_TRACES_TABLE") or "polo.otel_traces"),
        traces_dsn=os.environ.get("POLO_OTEL_TRACES_DSN") or None,
    )
