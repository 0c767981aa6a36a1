"""The sample world's Datadog organisation, rendered as the usage-cost API's payloads.

Daily costs per product accumulate into month-to-date estimates (current and previous
month, as the API keeps them); a month whose bill is final (from the 16th of the next
month) also has its historical cost, 1.5% above the estimates, as real true-ups are.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING, Any

from polo_pipelines.sources.datadog.client import month_end, month_start
from polo_pipelines.sources.sample.server import Reply, Request, SampleServer

if TYPE_CHECKING:
    from polo_pipelines.sources.sample.platforms import PlatformSample

ORG = "examplecorp"
# product -> {charge type: USD a day}
PRODUCTS = {
    "infra_hosts": {"committed": 62.0, "on_demand": 9.0},
    "apm_hosts": {"committed": 41.0, "on_demand": 4.0},
    "logs_indexed_15day": {"on_demand": 27.0},
    "logs_ingested": {"on_demand": 11.5},
    "synthetics_api_tests": {"on_demand": 3.2},
}
TRUE_UP = 1.015


class DatadogSample:
    def __init__(self, start: dt.date, end: dt.date, seed: int):
        self.start, self.end, self.seed = start, end, seed

    def daily(self, day: dt.date) -> dict[tuple[str, str], float]:
        if day >= self.end:  # the account is older than the world's window: whole months have costs
            return {}
        rng = random.Random(f"{self.seed}:datadog:{day.isoformat()}")
        weekend = 0.85 if day.weekday() >= 5 else 1.0
        return {
            (product, charge): round(cost * (1.0 if charge == "committed" else weekend * rng.uniform(0.9, 1.1)), 4)
            for product, charges in PRODUCTS.items()
            for charge, cost in charges.items()
        }

    def _entry(self, day: dt.date, costs: dict[tuple[str, str], float]) -> dict[str, Any]:
        charges = []
        for product in PRODUCTS:
            parts = {c: v for (p, c), v in costs.items() if p == product}
            charges.extend({"product_name": product, "charge_type": c, "cost": round(v, 4)} for c, v in parts.items())
            charges.append({"product_name": product, "charge_type": "total", "cost": round(sum(parts.values()), 4)})
        return {
            "type": "cost_by_org",
            "id": f"{ORG}-{day.isoformat()}",
            "attributes": {
                "org_name": ORG,
                "public_id": "abcdef0123",
                "region": "us",
                "date": f"{day.isoformat()}T00:00:00+00:00",
                "total_cost": round(sum(costs.values()), 4),
                "charges": charges,
            },
        }

    def estimated(self, start: dt.date, end_inclusive: dt.date) -> list[dict[str, Any]]:
        kept_from = month_start(month_start(self.end - dt.timedelta(days=1)) - dt.timedelta(days=1))
        out = []
        day = max(start, kept_from)
        while day <= min(end_inclusive, self.end - dt.timedelta(days=1)):
            running: dict[tuple[str, str], float] = {}
            d = month_start(day)
            while d <= day:
                for key, value in self.daily(d).items():
                    running[key] = running.get(key, 0.0) + value
                d += dt.timedelta(days=1)
            if running:
                out.append(self._entry(day, running))
            day += dt.timedelta(days=1)
        return out

    def historical(self, month: dt.date) -> list[dict[str, Any]]:
        if self.end < month_end(month) + dt.timedelta(days=16):
            return []  # not final yet
        totals: dict[tuple[str, str], float] = {}
        d = month
        while d <= month_end(month):
            for key, value in self.daily(d).items():
                totals[key] = totals.get(key, 0.0) + value * TRUE_UP
            d += dt.timedelta(days=1)
        return [self._entry(month, totals)] if totals else []


DATADOG_API_KEY = "sample-dd-api-key"
DATADOG_APP_KEY = "sample-dd-app-key"


def add_routes(server: SampleServer, world: PlatformSample) -> None:
    dd = world.data("datadog")

    def keys(request: Request) -> Reply | None:
        if request.headers.get("dd-api-key") != DATADOG_API_KEY or request.headers.get("dd-application-key") != DATADOG_APP_KEY:
            return Reply(403, {"errors": ["Forbidden"]})
        return None

    def estimated(request: Request) -> Reply:
        q = request.query
        data = dd.estimated(dt.date.fromisoformat(q["start_date"]), dt.date.fromisoformat(q["end_date"]))
        return keys(request) or Reply(200, {"data": data})

    def historical(request: Request) -> Reply:
        month = dt.date.fromisoformat(request.query["start_month"] + "-01")
        return keys(request) or Reply(200, {"data": dd.historical(month)})

    server.route("GET", r"/datadog/api/v2/usage/estimated_cost", estimated)
    server.route("GET", r"/datadog/api/v2/usage/historical_cost", historical)


def sample_data(world: PlatformSample) -> DatadogSample:
    return DatadogSample(world.start, world.end, world.seed)


def sample_source():
    """The Datadog source, pointed at the sample server, its month-to-date as of the sample world's end."""
    from polo_pipelines.sources.datadog.source import DatadogSource
    from polo_pipelines.sources.sample.platforms import serve_sample

    world, server = serve_sample()
    return DatadogSource(
        site="sample", api_url=f"{server.url}/datadog", api_key=DATADOG_API_KEY, app_key=DATADOG_APP_KEY, today=world.end.isoformat()
    )
