"""The spans already in the store, priced: a day's (or a window's) cost events of collector ``cost_otel``."""

from __future__ import annotations

import datetime as dt
import os

import boto3
import pandas as pd
from botocore.config import Config

from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import env_flag
from polo_pipelines.sources.otel import costs, prices
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.storage import open_store, parse_dsn

# Throttling and 5xx are retried by the client, with backoff, eight requests in all
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 8})
PRICE_LIST_REGION = "us-east-1"  # the Price List API answers in us-east-1, eu-central-1 and ap-south-1


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

    def needs(self, store, start: dt.date, end: dt.date) -> pd.DataFrame:
        """The window's cost events, computed in the store from its spans (the prices asked or cached on the way)."""
        lo, hi = (dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC) for d in (start, end))
        file = prices.load_file()
        client = self.pricing()
        priced = lambda keys: prices.host_prices(store, keys, client, file=file)  # noqa: E731  (the cache: Polo's store)
        if not self.traces_dsn:
            return costs.window(store, lo, hi, priced, file, self.traces_table)
        if parse_dsn(self.traces_dsn).scheme == "chdb":
            raise PoloInputError(
                "POLO_OTEL_TRACES_DSN must be a ClickHouse server (clickhouse://, http(s)://): for a table in Polo's own "
                "store, set POLO_OTEL_TRACES_TABLE alone",
                source="otel",
                field="POLO_OTEL_TRACES_DSN",
            )
        with open_store(self.traces_dsn, reader=True) as traces:
            return costs.window(traces, lo, hi, priced, file, self.traces_table)

    def collect(self, start: dt.date, end: dt.date, needs: pd.DataFrame | None = None) -> Collected:
        events = needs if needs is not None else costs.events(pd.DataFrame())
        return Collected(costs.COLLECTOR, "polo.otel_traces", events, ["polo.otel_traces"], {"lines": len(events)})

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
