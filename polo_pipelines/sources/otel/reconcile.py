"""A day's span estimates reconciled to the bill: once a billing collector holds a host's cost for the day, the
services that ran on it are rescaled to add up to that cost, and the rest is the host's idle line.

Per host (a span's ``host.id``, matched to a billed resource whose id, or whose ARN's last path segment, is that
id: ``arn:aws:ec2:…:instance/i-0abc`` for ``i-0abc``), with ``actual`` its billed cost that day, ``estimated`` its
lines' host shares and ``full`` its hourly price × 24:

- every line's host share × ``actual / max(full, estimated)``: the estimate's proportions kept, the host's price
  replaced by what it really cost (a host billed at a discount, for part of the day, on a Savings Plan);
- the host's idle line (``otel:idle/{host}``) holds the rest, ``actual`` less the rescaled shares, so the services
  plus idle equal the host's billed cost exactly;
- per-call prices (LLM tokens) are not the host's and stay as estimated.

A reconciled line says ``basis=reconciled`` and keeps its estimate (``estimate_host``, ``estimate_calls``), so the
estimate-to-actual change stays visible and a later reconciliation starts again from the estimate. A host no billing
collector holds yet keeps its estimated lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from polo_pipelines.sources.otel.costs import COLLECTOR, IDLE, LINE_COLUMNS

HOURS_A_DAY = 24.0


def billed(store, day: dt.date, hosts: list[str]) -> dict[str, float]:
    """Each host's cost on ``day`` as the billing collectors hold it (hosts no collector holds are left out)."""
    if not hosts:
        return {}
    rows = store.query_rows(
        """
        SELECT if(position(resource_arn, '/') > 0, splitByChar('/', resource_arn)[-1], resource_arn) AS host, sum(cost)
        FROM polo.cost_resource_daily
        WHERE day = {day:Date} AND collector != {otel:String} AND host IN {hosts:Array(String)}
        GROUP BY host
        """,
        {"day": day, "otel": COLLECTOR, "hosts": hosts},
    )
    return {str(h): float(c) for h, c in rows}


@dataclass(frozen=True)
class HostReconciled:
    host: str
    estimated: float  # the lines' host shares as priced from the spans
    full_day: float  # the host's hourly price × 24
    actual: float  # its billed cost
    services: float  # the lines' host shares after the rescale
    idle: float


def reconcile(day_lines: pd.DataFrame, actual: Mapping[str, float], day: dt.date) -> tuple[pd.DataFrame, list[HostReconciled]]:
    """The day's lines with every billed host's rescaled and its idle line added; what each host came to."""
    out = day_lines[day_lines["kind"] != "idle"].reset_index(drop=True).copy()
    if out.empty:
        return out[LINE_COLUMNS], []
    out["host_cost"] = out["host_cost"].astype("float64")
    out["call_cost"] = out["call_cost"].astype("float64")
    out["cost"] = (out["host_cost"] + out["call_cost"]).round(9)
    out["basis"] = "estimated"
    billed_hosts = out["host"].isin(list(actual))
    per_host = out[billed_hosts].groupby("host").agg(estimated=("host_cost", "sum"), hourly=("hourly", "max"))
    factors = {}
    for host, row in per_host.iterrows():
        full = float(row["hourly"]) * HOURS_A_DAY
        base = max(full, float(row["estimated"]))
        factors[host] = actual[host] / base if base > 0 and actual[host] > 0 else 0.0
    factor = out["host"].map(factors).astype("float64")
    rescaled = (out["host_cost"] * factor).round(9)
    out.loc[billed_hosts, "cost"] = (rescaled + out["call_cost"]).round(9)[billed_hosts]
    out.loc[billed_hosts, "basis"] = "reconciled"
    shares = rescaled[billed_hosts].groupby(out.loc[billed_hosts, "host"]).sum()
    idle_rows, summary = [], []
    for host, row in per_host.iterrows():
        mine = out[out["host"] == host]
        environment = mine["environment"].mode().iloc[0] if len(mine) else ""
        services = float(shares.get(host, 0.0))
        idle = round(actual[host] - services, 9)
        full = float(row["hourly"]) * HOURS_A_DAY
        summary.append(HostReconciled(host, float(row["estimated"]), full, actual[host], services, idle))
        idle_rows.append(
            {
                "bucket": pd.Timestamp(day),
                "kind": "idle",
                "service": IDLE,
                "operation": host,
                "environment": environment,
                "version": "",
                "host": host,
                "host_key": mine["host_key"].iloc[0] if len(mine) else "",
                "unpriced": "",
                "spans": 0,
                "flagged": 0,
                "seconds": 0.0,
                "input_tokens": 0,
                "output_tokens": 0,
                "hourly": float(row["hourly"]),
                "host_cost": max(full - float(row["estimated"]), 0.0),  # the idle time the estimate saw
                "call_cost": 0.0,
                "cost": idle,
                "basis": "reconciled",
            }
        )
    lines = pd.concat([out, pd.DataFrame(idle_rows, columns=LINE_COLUMNS)], ignore_index=True) if idle_rows else out
    lines["bucket"] = pd.to_datetime(lines["bucket"])
    return lines[LINE_COLUMNS], summary


def summary_table(hosts: list[HostReconciled]) -> pd.DataFrame:
    """Each host's estimate beside its bill (the estimate-to-actual change), largest bill first."""
    frame = pd.DataFrame([h.__dict__ for h in hosts], columns=["host", "estimated", "full_day", "actual", "services", "idle"])
    frame["change"] = np.where(frame["full_day"] > 0, frame["actual"] / frame["full_day"].where(frame["full_day"] > 0) - 1, np.nan)
    return frame.sort_values("actual", ascending=False).reset_index(drop=True)


def day_figures(store, day: dt.date) -> pd.DataFrame:
    """Each host's day as stored: its lines' estimate of the host's share, the shares after reconciliation, its idle
    line, its price at list for the whole day (``full_day``), and its bill (``billed`` NaN where none landed): services + idle = billed, for every reconciled host."""
    frame = store.query_df(
        """
        SELECT properties['host'] AS host,
               sumIf(toFloat64OrZero(properties['estimate_host']), event_action != 'idle') AS estimated,
               sumIf(value - toFloat64OrZero(properties['estimate_calls']), event_action != 'idle') AS services,
               sumIf(value, event_action = 'idle') AS idle,
               max(toFloat64OrZero(properties['host_hourly'])) * 24 AS full_day,
               countIf(properties['basis'] = 'reconciled') > 0 AS reconciled
        FROM polo.resource_events
        WHERE collector = {otel:String} AND toDate(event_time) = {day:Date} AND event_type = 'cost' AND properties['host'] != ''
        GROUP BY host ORDER BY host
        """,
        {"otel": COLLECTOR, "day": day},
        columns=["host", "estimated", "services", "idle", "full_day", "reconciled"],
    )
    bills = billed(store, day, frame["host"].tolist())
    frame["billed"] = frame["host"].map(bills).astype("float64")
    return frame
