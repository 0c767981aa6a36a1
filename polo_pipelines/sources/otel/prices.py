"""What the compute a span ran on costs an hour, and what a call costs: the AWS Price List API for instances, a price
file for the rest, cached in the store with the version they came from.

A span's host is read from its resource attributes (``cloud.provider``, ``cloud.region``, ``host.type``). Its hourly
On-Demand price comes from the Price List API (``pricing`` ``GetProducts``, service ``AmazonEC2``, Linux, shared
tenancy, no pre-installed software, capacity used: the documented filters), kept in ``polo.prices`` with the
publication version the answer carried and read again once older than ``POLO_PRICE_TTL_HOURS`` (24). The price file
(``config/prices.yaml``, ``POLO_PRICES_FILE``) prices what the Price List does not: hosts by name (an on-premises
machine, another cloud's instance type) and per-call usage (LLM tokens by model, third-party APIs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import PROJECT_ROOT
from polo_pipelines.sources.aws.calls import aws_call
from polo_pipelines.validation import load_yaml

SOURCE = "otel_prices"
DEFAULT_FILE = PROJECT_ROOT / "config" / "prices.yaml"
TTL_HOURS = 24.0


@dataclass(frozen=True)
class Price:
    key: str  # aws:ec2:us-east-1:m5.xlarge, file:host:build-box-1, file:gen_ai:gpt-4o:input
    usd: float  # per unit
    unit: str  # hour, token
    source: str  # price-list | file
    version: str  # the Price List's publication version, or the file's digest
    fetched_at: dt.datetime


def ttl_hours() -> float:
    raw = os.environ.get("POLO_PRICE_TTL_HOURS", "")
    try:
        return float(raw) if raw else TTL_HOURS
    except ValueError:
        raise PoloInputError(f"not a number of hours: {raw!r}", source="settings", field="POLO_PRICE_TTL_HOURS") from None


def host_key(resource: Mapping[str, str]) -> str | None:
    """The key of the compute a span ran on, from its resource attributes (None when they do not say)."""
    kind, region = resource.get("host.type", ""), resource.get("cloud.region", "")
    if resource.get("cloud.provider") == "aws" and kind and region:
        return f"aws:ec2:{region}:{kind}"
    if kind:
        return f"file:host:{kind}"
    return None


# ------------------------------------------------------------------ the Price List API


FILTERS = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}


def ec2_hourly(client, region: str, instance_type: str, partition: str = "") -> tuple[float, str]:
    """(USD an hour On-Demand, the Price List version) for a Linux instance type in a region."""
    request = {
        "ServiceCode": "AmazonEC2",
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
        "Filters": [
            {"Type": "TERM_MATCH", "Field": field, "Value": value}
            for field, value in {"instanceType": instance_type, "regionCode": region, **FILTERS}.items()
        ],
    }
    what = f"pricing GetProducts AmazonEC2 {instance_type} in {region}"
    found: list[tuple[float, str]] = []
    while True:
        answer = aws_call(client.get_products, what, source=SOURCE, partition=partition, **request)
        listed = answer.get("PriceList")
        if not isinstance(listed, list):
            raise PoloInputError(f"{what}: no PriceList", source=SOURCE, field="PriceList", partition=partition)
        found.extend(_on_demand(item, what, partition) for item in listed)
        if not answer.get("NextToken"):
            break
        request["NextToken"] = answer["NextToken"]
    hourly = [f for f in found if f[0] > 0]
    if not hourly:
        raise PoloInputError(
            f"{what}: the Price List has no On-Demand hourly price", source=SOURCE, field="terms.OnDemand", partition=partition
        )
    return min(hourly)


def _on_demand(item: Any, what: str, partition: str) -> tuple[float, str]:
    """One PriceList entry (a JSON document as a string): its On-Demand price per hour and the list's version."""
    try:
        doc = json.loads(item) if isinstance(item, str) else item
        terms = doc["terms"]["OnDemand"]
        prices = [
            float(dim["pricePerUnit"]["USD"])
            for term in terms.values()
            for dim in term["priceDimensions"].values()
            if str(dim.get("unit", "")).lower() in ("hrs", "hours", "hour")
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PoloInputError(
            f"{what}: a PriceList entry is not in the documented shape ({exc!r})", source=SOURCE, field="PriceList", partition=partition
        ) from None
    return (max(prices) if prices else 0.0), str(doc.get("version") or doc.get("publicationDate") or "")


# ------------------------------------------------------------------ the price file


def load_file(path: Path | None = None) -> dict[str, Price]:
    """The price file's prices by key: ``hosts`` (name → USD an hour) and ``per_call`` (``gen_ai`` model → USD per
    million input and output tokens; any other name → USD a call)."""
    path = Path(path or os.environ.get("POLO_PRICES_FILE") or DEFAULT_FILE)
    doc = load_yaml(path, "prices file", PoloInputError) if path.exists() else {}
    doc = doc or {}
    if not isinstance(doc, dict) or set(doc) - {"hosts", "per_call"}:
        raise PoloInputError(f"{path}: a mapping of hosts and per_call", source=SOURCE, field="prices file")
    now = dt.datetime.now(dt.UTC)
    version = f"file:{int(path.stat().st_mtime) if path.exists() else 0}"
    out: dict[str, Price] = {}
    for name, usd in (doc.get("hosts") or {}).items():
        out[f"file:host:{name}"] = Price(f"file:host:{name}", _usd(usd, f"hosts.{name}", path), "hour", "file", version, now)
    for name, spec in ((doc.get("per_call") or {}).get("gen_ai") or {}).items():
        if not isinstance(spec, dict):
            raise PoloInputError(
                f"{path}: per_call.gen_ai.{name} needs input_per_million and output_per_million",
                source=SOURCE,
                field=f"per_call.gen_ai.{name}",
            )
        for side in ("input", "output"):
            usd = _usd(spec.get(f"{side}_per_million"), f"per_call.gen_ai.{name}.{side}_per_million", path) / 1e6
            out[f"file:gen_ai:{name}:{side}"] = Price(f"file:gen_ai:{name}:{side}", usd, "token", "file", version, now)
    return out


def _usd(value: Any, field: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PoloInputError(f"{path}: {field} must be a non-negative amount in USD, got {value!r}", source=SOURCE, field=field)
    return float(value)


# ------------------------------------------------------------------ the cache


def cached(store, keys: list[str]) -> dict[str, Price]:
    """The latest stored price of each key."""
    if not keys:
        return {}
    frame = store.query_df(
        """
        SELECT key, argMax(p.usd, p.fetched_at) AS usd, argMax(p.unit, p.fetched_at) AS unit, argMax(p.source, p.fetched_at) AS source,
               argMax(p.version, p.fetched_at) AS version, max(p.fetched_at) AS latest
        FROM polo.prices AS p WHERE key IN {keys:Array(String)} GROUP BY key
        """,
        {"keys": keys},
        columns=["key", "usd", "unit", "source", "version", "latest"],
    )
    return {r.key: Price(r.key, float(r.usd), r.unit, r.source, r.version, _utc(r.latest)) for r in frame.itertuples()}


def _utc(value) -> dt.datetime:
    moment = pd.Timestamp(value)
    return (moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")).to_pydatetime()


def store_prices(store, prices: list[Price]) -> None:
    if prices:
        store.insert_df(
            "polo.prices",
            pd.DataFrame(
                {
                    "key": [p.key for p in prices],
                    "usd": [p.usd for p in prices],
                    "unit": [p.unit for p in prices],
                    "source": [p.source for p in prices],
                    "version": [p.version for p in prices],
                    "fetched_at": pd.to_datetime([p.fetched_at for p in prices], utc=True).tz_localize(None),
                }
            ),
        )


def host_prices(
    store, keys: list[str], client=None, now: dt.datetime | None = None, file: dict[str, Price] | None = None
) -> dict[str, Price]:
    """The hourly price of each host key: the price file's; else a stored Price List price younger than the TTL; else
    the Price List asked now (and stored). A key neither can price is left out: its spans become ``unpriced`` lines."""
    now = now or dt.datetime.now(dt.UTC)
    file = load_file() if file is None else file
    out = {k: file[k] for k in keys if k in file}
    wanted = [k for k in keys if k not in out and k.startswith("aws:ec2:")]
    held = cached(store, wanted)
    fresh, stale = {}, []
    for key in wanted:
        price = held.get(key)
        if price is not None and now - price.fetched_at < dt.timedelta(hours=ttl_hours()):
            fresh[key] = price
        else:
            stale.append(key)
    asked = []
    for key in stale:
        if client is None:
            continue
        _, _, region, kind = key.split(":", 3)
        usd, version = ec2_hourly(client, region, kind)
        asked.append(Price(key, usd, "hour", "price-list", version, now))
    store_prices(store, asked)
    return {**out, **fresh, **{p.key: p for p in asked}}
