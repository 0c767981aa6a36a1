"""Datadog costs: daily cost per product from the estimated-cost endpoint, replaced by the final bill once a month closes.

- ``/api/v2/usage/estimated_cost`` (current and previous month) gives month-to-date totals
  per day; a day's cost is its total minus the day before's (the first of the month is its
  own total). The window is read from the first of each month it touches, so the first day
  of the window has its predecessor.
- ``/api/v2/usage/historical_cost`` has a month's final cost (by the 16th of the next
  month). For a month that has one, each product's daily estimates are scaled so the days
  add up to the final figure; with no estimates left (older than the previous month) the
  final figure is spread evenly over the month's days.
- A ``total`` charge is never added to its parts: it is used only for a product that has
  no ``committed`` or ``on_demand`` charge.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.http import ApiClient, records, require
from polo_pipelines.store.events import cost_events, empty_events

COLLECTOR = "cost_datadog"
SOURCE = "datadog"
SITES = (
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
)
ATTRIBUTE_FIELDS = ("date", "charges")
CHARGE_FIELDS = ("product_name", "charge_type", "cost")


def api_url(site: str) -> str:
    site = site.strip().lower().removeprefix("https://").removeprefix("app.").removeprefix("api.").rstrip("/")
    if site not in SITES:
        raise ValueError(f"unknown Datadog site {site!r}: one of {', '.join(SITES)}")
    return f"https://api.{site}"


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_end(day: dt.date) -> dt.date:
    """The month's last day."""
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def months(start: dt.date, end: dt.date) -> list[dt.date]:
    out, month = [], month_start(start)
    while month < end:
        out.append(month)
        month = month_end(month) + dt.timedelta(days=1)
    return out


class DatadogApi:
    def __init__(self, client: ApiClient, url: str):
        self.client = client
        self.url = url.rstrip("/")

    def _costs(self, endpoint: str, params: dict[str, str]) -> list[dict[str, Any]]:
        doc = self.client.get_json(f"{self.url}/api/v2/usage/{endpoint}", params={**params, "view": "sub-org"})
        data = require(doc, "data", source=SOURCE, partition=self.client.partition, kind=list)
        rows = []
        for index, entry in enumerate(data):
            attributes = (
                require(entry, "attributes", source=SOURCE, partition=self.client.partition, kind=dict) if isinstance(entry, dict) else None
            )
            if attributes is None:
                raise PoloInputError(f"data[{index}] is not an object", source=SOURCE, field="data", partition=self.client.partition)
            records([attributes], ATTRIBUTE_FIELDS, source=SOURCE, what="data[].attributes", partition=self.client.partition)
            charges = records(
                attributes["charges"] or [], CHARGE_FIELDS, source=SOURCE, what="data[].attributes.charges", partition=self.client.partition
            )
            day = _day(attributes["date"], self.client.partition)
            org = str(attributes.get("org_name") or attributes.get("public_id") or "")
            for charge in charges:
                rows.append(
                    (
                        day,
                        org,
                        str(charge["product_name"]),
                        str(charge["charge_type"]).lower(),
                        _cost(charge["cost"], self.client.partition),
                    )
                )
        return rows

    def estimated(self, start: dt.date, end_inclusive: dt.date) -> list[tuple]:
        return self._costs("estimated_cost", {"start_date": start.isoformat(), "end_date": end_inclusive.isoformat()})

    def historical(self, month: dt.date) -> list[tuple]:
        key = month.strftime("%Y-%m")
        return self._costs("historical_cost", {"start_month": key, "end_month": key})

    def ping(self) -> str:
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        rows = self.estimated(month_start(yesterday), yesterday)
        return f"{len({r[2] for r in rows})} products with estimated costs this month"


def _day(value: Any, partition: str | None) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise PoloInputError(f"unreadable date {value!r}", source=SOURCE, field="data[].attributes.date", partition=partition) from None


def _cost(value: Any, partition: str | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PoloInputError(
            f"unreadable cost {value!r}", source=SOURCE, field="data[].attributes.charges[].cost", partition=partition
        ) from None


COLUMNS = ["day", "org", "product", "charge_type", "cost"]


def parts_only(frame: pd.DataFrame) -> pd.DataFrame:
    """Committed and on-demand charges; a product's ``total`` only where it has neither."""
    has_parts = frame[frame["charge_type"] != "total"].groupby(["org", "product"]).size()
    keys = pd.MultiIndex.from_frame(frame[["org", "product"]])
    keep = (frame["charge_type"] != "total") | ~keys.isin(has_parts.index)
    return frame[keep.to_numpy()]


def daily_from_month_to_date(frame: pd.DataFrame, month: dt.date, last: dt.date) -> pd.DataFrame:
    """Daily costs of one month from month-to-date totals (missing days carry the previous total: 0 that day)."""
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    days = pd.date_range(month, last, freq="D").date
    wide = frame.pivot_table(index="day", columns=["org", "product", "charge_type"], values="cost", aggfunc="sum")
    wide = wide.reindex(days).ffill().fillna(0.0)
    daily = wide.diff()
    daily.iloc[0] = wide.iloc[0]
    long = daily.stack(["org", "product", "charge_type"], future_stack=True).rename("cost").reset_index()
    return long.rename(columns={"level_0": "day", "index": "day"})[COLUMNS]


def finalize(daily: pd.DataFrame, final: pd.DataFrame, month: dt.date) -> pd.DataFrame:
    """Scale the month's daily estimates to its final cost per org, product and charge type (even spread without them)."""
    keys = ["org", "product", "charge_type"]
    totals = final.groupby(keys, as_index=False)["cost"].sum().rename(columns={"cost": "final"})
    days = pd.date_range(month, month_end(month), freq="D").date
    estimated = (
        daily.groupby(keys, as_index=False)["cost"].sum().rename(columns={"cost": "estimated"})
        if not daily.empty
        else pd.DataFrame(columns=[*keys, "estimated"])
    )
    plan = totals.merge(estimated, on=keys, how="left").fillna({"estimated": 0.0})
    scaled = daily.merge(plan, on=keys, how="inner")
    scaled = scaled[scaled["estimated"] != 0]
    scaled = scaled.assign(cost=scaled["cost"] * scaled["final"] / scaled["estimated"])[COLUMNS]
    even = plan[plan["estimated"] == 0]
    spread = pd.DataFrame(
        [
            (day, o, p, c, f / len(days))
            for o, p, c, f in zip(even["org"], even["product"], even["charge_type"], even["final"])
            for day in days
        ],
        columns=COLUMNS,
    )
    return (
        pd.concat([f for f in (scaled, spread) if not f.empty], ignore_index=True)
        if not (scaled.empty and spread.empty)
        else pd.DataFrame(columns=COLUMNS)
    )


@dataclass
class DatadogWindow:
    events: pd.DataFrame
    final_months: list[str] = field(default_factory=list)
    estimated_months: list[str] = field(default_factory=list)
    requests: int = 0


def collect(api: DatadogApi, start: dt.date, end: dt.date, today: dt.date | None = None) -> DatadogWindow:
    """Daily product costs for [start, end): final where the month is closed, estimated otherwise."""
    today = today or dt.datetime.now(dt.UTC).date()
    frames, finals, estimates = [], [], []
    for month in months(start, end):
        previous_month = month_start(month_start(today) - dt.timedelta(days=1))
        last = min(month_end(month), today - dt.timedelta(days=1))
        if last < month:
            continue
        final = pd.DataFrame(api.historical(month), columns=COLUMNS)
        final = final[(final["day"] >= month) & (final["day"] <= month_end(month))]
        estimated = pd.DataFrame(columns=COLUMNS)
        if month >= previous_month:  # the estimated-cost endpoint keeps the current and previous month only
            raw = pd.DataFrame(api.estimated(month, last), columns=COLUMNS)
            raw = raw[(raw["day"] >= month) & (raw["day"] <= last)]
            estimated = daily_from_month_to_date(parts_only(raw), month, last)
        if not final.empty:
            daily = finalize(estimated, parts_only(final), month)
            daily["basis"] = "final"
            finals.append(month.strftime("%Y-%m"))
        else:
            daily = estimated.assign(basis="estimated")
            if not estimated.empty:
                estimates.append(month.strftime("%Y-%m"))
        frames.append(daily[(daily["day"] >= start) & (daily["day"] < end)])
    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) else pd.DataFrame()
    return DatadogWindow(normalize(frame), finals, estimates, api.client.requests_made)


def product_id(product: str) -> str:
    return "_".join(str(product).strip().lower().replace("-", " ").split())


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return empty_events()
    frame = frame[frame["cost"] != 0].reset_index(drop=True)  # a day whose month-to-date total did not move
    products = frame["product"].map(product_id)
    props = [{"org": o, "charge_type": c, "basis": b} for o, c, b in zip(frame["org"], frame["charge_type"], frame["basis"])]
    return cost_events(
        resource_arn=("datadog:" + products).to_numpy(),
        resource_type="product",
        resource_name=frame["product"].to_numpy(),
        day=pd.to_datetime(frame["day"]),
        charge_category="Usage",
        value=frame["cost"].astype("float64").to_numpy(),
        billed_cost=frame["cost"].astype("float64").to_numpy(),
        list_cost=frame["cost"].astype("float64").to_numpy(),
        service=products.to_numpy(),
        provider="Datadog",
        properties=props,
        collector=COLLECTOR,
    )
