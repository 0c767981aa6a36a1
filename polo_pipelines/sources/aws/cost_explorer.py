"""AWS Cost Explorer (GetCostAndUsage) as a service x account level source, for organisations without a data export.

Two requests per window, both DAILY, grouped by LINKED_ACCOUNT and SERVICE or RECORD_TYPE:

- usage: everything but credits, refunds and tax, per account and service, attributed to the
  service-level id ``aws:{account}/{service}/global`` (charge category Usage);
- non-usage: tax, and credits and refunds unless ``exclude_credits`` is set, per account and
  record type, attributed to ``aws:{account}/{record type}/global`` (Tax, Credit, Adjustment).

``value`` is AmortizedCost, ``billed_cost`` UnblendedCost. Days Cost Explorer marks
``Estimated`` carry ``properties['estimated'] = 'true'``; the lookback re-reads them until final.
Each request costs $0.01, so a backfill asks for its whole range at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.aws.cur import COLLECTOR
from polo_pipelines.store.events import cost_events, empty_events, window_label

SOURCE = "aws-cost-explorer"
METRICS = ["AmortizedCost", "UnblendedCost"]
NON_USAGE = {"Credit": "Credit", "Refund": "Adjustment", "Tax": "Tax"}


@dataclass
class CostExplorerWindow:
    events: pd.DataFrame
    requests: int


def _pages(client: Any, request: dict) -> tuple[list[dict], int]:
    results, token, calls = [], None, 0
    while True:
        kwargs = dict(request, NextPageToken=token) if token else request
        response = client.get_cost_and_usage(**kwargs)
        calls += 1
        results.extend(response.get("ResultsByTime", []))
        token = response.get("NextPageToken")
        if not token:
            return results, calls


def _amount(group: dict, metric: str, partition: str) -> float:
    try:
        cell = group["Metrics"][metric]
        unit = cell.get("Unit", "USD")
        amount = float(cell["Amount"])
    except (KeyError, TypeError, ValueError):
        raise PoloInputError(
            "group without a numeric amount", source=SOURCE, field=f"Metrics.{metric}.Amount", partition=partition
        ) from None
    if unit != "USD":
        raise PoloInputError(f"amount in {unit}, not USD", source=SOURCE, field=f"Metrics.{metric}.Unit", partition=partition)
    if amount != amount:
        raise PoloInputError("amount is NaN", source=SOURCE, field=f"Metrics.{metric}.Amount", partition=partition)
    return amount


def normalize(
    results: list[dict],
    *,
    kind: str,
    partition: str,
    record_types: tuple[str, ...] = tuple(NON_USAGE),
    extra_properties: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    cols: dict[str, list] = {k: [] for k in ("arn", "day", "category", "service", "account", "value", "billed", "props")}
    for period in results:
        try:
            day = dt.date.fromisoformat(period["TimePeriod"]["Start"][:10])
        except (KeyError, TypeError, ValueError):
            raise PoloInputError("result without a time period", source=SOURCE, field="TimePeriod.Start", partition=partition) from None
        estimated = bool(period.get("Estimated"))
        for group in period.get("Groups", []):
            keys = group.get("Keys")
            if not isinstance(keys, list) or len(keys) != 2:
                raise PoloInputError("group without two keys", source=SOURCE, field="Groups.Keys", partition=partition)
            account, second = keys
            if kind == "usage":
                category = "Usage"
            elif second in record_types:
                category = NON_USAGE[second]
            else:
                continue  # a record type we did not ask for (e.g. credits when they are excluded)
            props = {"source": "cost_explorer", **dict(extra_properties or {})}
            if estimated:
                props["estimated"] = "true"
            cols["billed"].append(_amount(group, "UnblendedCost", partition))
            cols["value"].append(_amount(group, "AmortizedCost", partition))
            cols["arn"].append(f"aws:{account}/{second}/global")
            cols["day"].append(pd.Timestamp(day))
            cols["category"].append(category)
            cols["service"].append(second)
            cols["account"].append(account)
            cols["props"].append(props)
    if not cols["arn"]:
        return empty_events()
    return cost_events(
        resource_arn=cols["arn"],
        resource_type="aws:service",
        resource_name=cols["service"],
        day=cols["day"],
        charge_category=cols["category"],
        value=cols["value"],
        billed_cost=cols["billed"],
        list_cost=cols["billed"],
        service=cols["service"],
        provider="AWS",
        properties=cols["props"],
        collector=COLLECTOR,
        aws_account_id=cols["account"],
    )


def non_usage_types(exclude_credits: bool) -> tuple[str, ...]:
    return ("Tax",) if exclude_credits else ("Credit", "Refund", "Tax")


def requests_for(start: dt.date, end_exclusive: dt.date, exclude_credits: bool) -> dict[str, dict]:
    period = {"Start": start.isoformat(), "End": end_exclusive.isoformat()}
    non_usage = list(non_usage_types(exclude_credits))
    return {
        "usage": {
            "TimePeriod": period,
            "Granularity": "DAILY",
            "Metrics": METRICS,
            "GroupBy": [{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}, {"Type": "DIMENSION", "Key": "SERVICE"}],
            "Filter": {"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund", "Tax"]}}},
        },
        "non_usage": {
            "TimePeriod": period,
            "Granularity": "DAILY",
            "Metrics": METRICS,
            "GroupBy": [{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}, {"Type": "DIMENSION", "Key": "RECORD_TYPE"}],
            "Filter": {"Dimensions": {"Key": "RECORD_TYPE", "Values": non_usage}},
        },
    }


def collect(
    client: Any,
    start: dt.date,
    end_exclusive: dt.date,
    *,
    exclude_credits: bool = False,
    extra_properties: Mapping[str, str] | None = None,
) -> CostExplorerWindow:
    partition = window_label(start, end_exclusive)
    frames, calls = [], 0
    for kind, request in requests_for(start, end_exclusive, exclude_credits).items():
        results, n = _pages(client, request)
        calls += n
        frames.append(
            normalize(
                results, kind=kind, partition=partition, record_types=non_usage_types(exclude_credits), extra_properties=extra_properties
            )
        )
    events = pd.concat(frames, ignore_index=True)
    key = ["resource_arn", "event_time", "charge_category"]
    if events.duplicated(key).any():
        dupe = events[events.duplicated(key)].iloc[0]
        raise PoloInputError(
            f"the same account/service/day came back twice ({dupe['resource_arn']})",
            source=SOURCE,
            field="Groups.Keys",
            partition=partition,
        )
    return CostExplorerWindow(events=events, requests=calls)
