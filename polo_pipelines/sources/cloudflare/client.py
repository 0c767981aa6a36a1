"""Cloudflare costs: Workers per script and R2 per bucket, from the GraphQL Analytics API x a dated price table.

How a month's usage becomes daily costs (so a month's days add up to its bill):

1. Usage is read from the first of the month, per meter (Workers requests, Workers CPU-ms,
   R2 storage, R2 Class A and Class B operations) and per script or bucket.
2. For each meter the account's month-to-date usage is compared with the plan's monthly
   included amount: a day costs ``price x (billable to date - billable to the day before)``,
   so the free allowance is used up by the first days of the month, as on the invoice.
3. A day's cost of a meter is shared among scripts or buckets in proportion to their use of
   that meter that day.
4. Usage is billed in whole units (a million requests, a GB-month, ...): on the month's
   last day the round-up to the next whole unit is added, so the month's days equal the bill.
5. The Workers Paid plan's monthly fee is spread evenly over the month's days
   (``cloudflare:plan/workers-paid``).

R2 storage is the day's largest stored size (payload + metadata) as a fraction of a
GB-month (1 GB = 2^30 bytes, the unit R2's pricing page uses), i.e. GB / days in month.
R2 operations are Class A (writes, lists), Class B (reads) or free (deletes, aborts).
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.http import ApiClient, require
from polo_pipelines.store.events import cost_events, empty_events

COLLECTOR = "cost_cloudflare"
SOURCE = "cloudflare"
API_URL = "https://api.cloudflare.com/client/v4"
LIMIT = 10_000
GIB = 2**30


@dataclass(frozen=True)
class Meter:
    product: str  # worker | r2
    price: float  # USD per unit beyond the included amount
    unit: float  # usage per billing unit
    included: float  # usage included per month


@dataclass(frozen=True)
class Prices:
    since: dt.date
    meters: dict[str, Meter]
    plan_monthly: float  # Workers Paid subscription


# Published prices (Workers Paid plan, R2 Standard storage).
PRICES = [
    Prices(
        dt.date(2023, 1, 1),
        {
            "requests": Meter("worker", 0.30, 1e6, 10e6),
            "cpu_ms": Meter("worker", 0.02, 1e6, 30e6),
            "storage_gb_month": Meter("r2", 0.015, 1.0, 10.0),
            "class_a": Meter("r2", 4.50, 1e6, 1e6),
            "class_b": Meter("r2", 0.36, 1e6, 10e6),
        },
        5.00,
    )
]

CLASS_A = {
    "ListBuckets",
    "PutBucket",
    "ListObjects",
    "ListObjectsV2",
    "PutObject",
    "CopyObject",
    "CompleteMultipartUpload",
    "CreateMultipartUpload",
    "LifecycleStorageTierTransition",
    "ListMultipartUploads",
    "UploadPart",
    "UploadPartCopy",
    "ListParts",
    "PutBucketEncryption",
    "PutBucketCors",
    "PutBucketLifecycleConfiguration",
}
FREE = {"DeleteObject", "DeleteBucket", "AbortMultipartUpload", "DeleteObjects"}


def operation_class(action: str) -> str:
    """R2 operation class of an action type: 'class_a', 'class_b' (every other read) or 'free'."""
    if action in FREE:
        return "free"
    return "class_a" if action in CLASS_A else "class_b"


def prices_on(day: dt.date) -> Prices:
    chosen = PRICES[0]
    for table in PRICES:
        if day >= table.since:
            chosen = table
    return chosen


QUERY = """
query PoloUsage($accountTag: string!, $start: Date!, $end: Date!, $limit: uint64!) {
  viewer {
    accounts(filter: {accountTag: $accountTag}) {
      workersInvocationsAdaptive(limit: $limit, filter: {date_geq: $start, date_leq: $end}) {
        sum { requests cpuTimeUs }
        dimensions { scriptName date }
      }
      r2OperationsAdaptiveGroups(limit: $limit, filter: {date_geq: $start, date_leq: $end}) {
        sum { requests }
        dimensions { actionType bucketName date }
      }
      r2StorageAdaptiveGroups(limit: $limit, filter: {date_geq: $start, date_leq: $end}) {
        max { payloadSize metadataSize objectCount }
        dimensions { bucketName date }
      }
    }
  }
}
"""
DATASETS = ("workersInvocationsAdaptive", "r2OperationsAdaptiveGroups", "r2StorageAdaptiveGroups")
USAGE_COLUMNS = ["day", "meter", "product", "name", "quantity"]


class CloudflareApi:
    def __init__(self, client: ApiClient, account: str, url: str = API_URL):
        self.client = client
        self.account = account
        self.url = url.rstrip("/")

    def usage(self, start: dt.date, end_inclusive: dt.date) -> pd.DataFrame:
        """Daily usage per meter and script/bucket; a range whose groups reach the query limit is asked again day by day."""
        variables = {"accountTag": self.account, "start": start.isoformat(), "end": end_inclusive.isoformat(), "limit": LIMIT}
        data = self.client.graphql(f"{self.url}/graphql", QUERY, variables)
        accounts = require(data, "viewer.accounts", source=SOURCE, partition=self.client.partition, kind=list)
        if not accounts:
            raise PoloInputError(
                f"account {self.account} is not visible to this token",
                source=SOURCE,
                field="viewer.accounts",
                partition=self.client.partition,
            )
        account = accounts[0]
        if any(len(account.get(name) or []) >= LIMIT for name in DATASETS) and start < end_inclusive:
            days = pd.date_range(start, end_inclusive, freq="D").date
            return pd.concat([self.usage(day, day) for day in days], ignore_index=True)
        return usage_frame(account, self.client.partition)

    def ping(self) -> str:
        doc = self.client.get_json(f"{self.url}/user/tokens/verify")
        return f"token {require(doc, 'result.status', source=SOURCE, partition=None)}"


def _group(row: Any, dataset: str, partition: str | None) -> tuple[dict, dict]:
    if not isinstance(row, dict) or "dimensions" not in row:
        raise PoloInputError("group is missing a field", source=SOURCE, field=f"{dataset}[].dimensions", partition=partition)
    dims = row["dimensions"]
    if "date" not in dims:
        raise PoloInputError("group is missing a field", source=SOURCE, field=f"{dataset}[].dimensions.date", partition=partition)
    return dims, row


def _number(block: dict, names: tuple[str, ...], dataset: str, partition: str | None) -> float:
    for name in names:  # the schema's name first, then the older or documented spelling
        if name in (block or {}):
            return float(block[name] or 0)
    raise PoloInputError("group is missing a field", source=SOURCE, field=f"{dataset}[].{names[0]}", partition=partition)


def usage_frame(account: dict[str, Any], partition: str | None) -> pd.DataFrame:
    rows: list[tuple] = []
    for row in account.get("workersInvocationsAdaptive") or []:
        dims, row = _group(row, "workersInvocationsAdaptive", partition)
        day, script = dt.date.fromisoformat(dims["date"]), str(dims.get("scriptName") or "")
        total = row.get("sum") or {}
        rows.append((day, "requests", "worker", script, _number(total, ("requests",), "workersInvocationsAdaptive.sum", partition)))
        cpu_us = _number(total, ("cpuTimeUs", "cpuTime"), "workersInvocationsAdaptive.sum", partition)
        rows.append((day, "cpu_ms", "worker", script, cpu_us / 1000.0))
    for row in account.get("r2OperationsAdaptiveGroups") or []:
        dims, row = _group(row, "r2OperationsAdaptiveGroups", partition)
        meter = operation_class(str(dims.get("actionType") or ""))
        if meter != "free":
            count = _number(row.get("sum") or {}, ("requests",), "r2OperationsAdaptiveGroups.sum", partition)
            rows.append((dt.date.fromisoformat(dims["date"]), meter, "r2", str(dims.get("bucketName") or ""), count))
    for row in account.get("r2StorageAdaptiveGroups") or []:
        dims, row = _group(row, "r2StorageAdaptiveGroups", partition)
        day = dt.date.fromisoformat(dims["date"])
        peak = row.get("max") or {}
        size = _number(peak, ("payloadSize",), "r2StorageAdaptiveGroups.max", partition) + float(peak.get("metadataSize") or 0)
        rows.append(
            (day, "storage_gb_month", "r2", str(dims.get("bucketName") or ""), size / GIB / calendar.monthrange(day.year, day.month)[1])
        )
    frame = pd.DataFrame(rows, columns=USAGE_COLUMNS)
    return frame.groupby(["day", "meter", "product", "name"], as_index=False)["quantity"].sum() if not frame.empty else frame


def month_costs(usage: pd.DataFrame, month: dt.date, last: dt.date) -> pd.DataFrame:
    """Daily cost per meter and script/bucket for the month's days through ``last`` (see the module's steps)."""
    days_in_month = calendar.monthrange(month.year, month.month)[1]
    month_over = last == month.replace(day=days_in_month)
    prices = prices_on(month)
    out = []
    for meter_name, meter in prices.meters.items():
        rows = usage[usage["meter"] == meter_name]
        if rows.empty:
            continue
        per_day = rows.groupby("day")["quantity"].sum().reindex(pd.date_range(month, last, freq="D").date, fill_value=0.0)
        to_date = per_day.cumsum()
        billable = (to_date - meter.included).clip(lower=0.0) / meter.unit
        cost = billable.diff().fillna(billable) * meter.price
        if month_over:
            cost.iloc[-1] += (math.ceil(round(billable.iloc[-1], 9)) - billable.iloc[-1]) * meter.price
        share = rows.merge(per_day.rename("day_total"), left_on="day", right_index=True)
        share = share.merge(cost.rename("day_cost"), left_on="day", right_index=True)
        weights = np.where(share["day_total"] > 0, share["quantity"] / share["day_total"].where(share["day_total"] > 0, 1.0), 0.0)
        share["cost"] = share["day_cost"] * weights
        share["unit_price"] = meter.price / meter.unit
        out.append(share[["day", "meter", "product", "name", "quantity", "cost", "unit_price"]])
    plan_days = pd.date_range(month, last, freq="D").date
    plan = pd.DataFrame(
        {
            "day": plan_days,
            "meter": "plan",
            "product": "plan",
            "name": "workers-paid",
            "quantity": 1.0 / days_in_month,
            "cost": prices.plan_monthly / days_in_month,
            "unit_price": prices.plan_monthly,
        }
    )
    out.append(plan)
    return pd.concat(out, ignore_index=True)


@dataclass
class CloudflareWindow:
    events: pd.DataFrame
    usage_rows: int = 0
    requests: int = 0
    months: list[str] = field(default_factory=list)


def collect(api: CloudflareApi, start: dt.date, end: dt.date) -> CloudflareWindow:
    """Costs for [start, end): each month touched is read from its first day, so its allowance is applied in order."""
    frames, rows, months = [], 0, []
    month = start.replace(day=1)
    while month < end:
        month_last = month.replace(day=calendar.monthrange(month.year, month.month)[1])
        last = min(month_last, end - dt.timedelta(days=1))
        usage = api.usage(month, last)
        rows += len(usage)
        costs = month_costs(usage, month, last)
        frames.append(costs[(costs["day"] >= start) & (costs["day"] < end)])
        months.append(month.strftime("%Y-%m"))
        month = month_last + dt.timedelta(days=1)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return CloudflareWindow(normalize(frame), rows, api.client.requests_made, months)


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return empty_events()
    frame = frame.reset_index(drop=True)
    ids = "cloudflare:" + frame["product"] + "/" + frame["name"]
    service = frame["product"].map({"worker": "Workers", "r2": "R2", "plan": "Workers Paid plan"})
    props = [
        {"meter": m, "usage": f"{q:.6g}", "unit_price_usd": f"{p:.9g}"}
        for m, q, p in zip(frame["meter"], frame["quantity"], frame["unit_price"])
    ]
    return cost_events(
        resource_arn=ids.to_numpy(),
        resource_type=frame["product"].map({"worker": "worker", "r2": "bucket", "plan": "plan"}).to_numpy(),
        resource_name=frame["name"].to_numpy(),
        day=pd.to_datetime(frame["day"]),
        charge_category=np.where(frame["product"] == "plan", "Purchase", "Usage"),
        value=frame["cost"].astype("float64").to_numpy(),
        billed_cost=frame["cost"].astype("float64").to_numpy(),
        list_cost=frame["cost"].astype("float64").to_numpy(),
        service=service.to_numpy(),
        provider="Cloudflare",
        properties=props,
        collector=COLLECTOR,
    )
