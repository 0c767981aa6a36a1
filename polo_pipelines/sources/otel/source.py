"""The spans already in the store, priced: a day's (or a window's) cost events of collector ``cost_otel``."""

from __future__ import annotations

import datetime as dt

import boto3
import pandas as pd
from botocore.config import Config

from polo_pipelines.settings import env_flag
from polo_pipelines.sources.otel import costs, prices
from polo_pipelines.sources.spec import Collected, CostSource

# Throttling and 5xx are retried by the client, with backoff, eight requests in all
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 8})
PRICE_LIST_REGION = "us-east-1"  # the Price List API answers in us-east-1, eu-central-1 and ap-south-1


class OtelSource(CostSource):
    """The spans in ``polo.otel_traces`` (POLO_OTEL=1), priced per service and operation."""

    enabled: bool = False
    pricing_endpoint_url: str | None = None

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
        return costs.window(store, lo, hi, lambda keys: prices.host_prices(store, keys, client, file=file), file)

    def collect(self, start: dt.date, end: dt.date, needs: pd.DataFrame | None = None) -> Collected:
        events = needs if needs is not None else costs.events(pd.DataFrame())
        return Collected(costs.COLLECTOR, "polo.otel_traces", events, ["polo.otel_traces"], {"lines": len(events)})

    def check(self) -> str:
        prices.load_file()
        self.pricing().describe_services(ServiceCode="AmazonEC2", MaxResults=1)
        return "the price file reads, and the Price List answers"


def from_env() -> OtelSource:
    return OtelSource(enabled=env_flag("POLO_OTEL"))
