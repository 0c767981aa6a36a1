"""Azure costs: the Cost Management Query API, daily, per resource and service, actual and amortized.

Two queries per scope (``ActualCost`` for what is billed, ``AmortizedCost`` for the
effective cost that is Polo's value), each grouped by ``ResourceId`` and ``ServiceName``
(the API allows two groupings) and paged through ``properties.nextLink`` (the same body
POSTed again). Columns are read by name, never by position. Resource ids are lower-cased
ARM ids; cost without one (marketplace, reservations bought at the scope) goes to
``azure:{scope}/{service}``.

``properties['service_group']`` keeps the grouping users of the earlier tool relied on:
every Azure OpenAI model and deployment under "Azure OpenAI", speech-to-text and
text-to-speech under "Azure AI Speech"; other services keep their own name.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.http import ApiClient, require
from polo_pipelines.store.events import cost_events, empty_events

COLLECTOR = "cost_azure"
SOURCE = "azure"
MANAGEMENT_URL = "https://management.azure.com"
AUTHORITY_URL = "https://login.microsoftonline.com"
API_VERSION = "2023-11-01"
COST_COLUMNS = ("Cost", "PreTaxCost", "CostUSD", "PreTaxCostUSD")

SERVICE_GROUPS = [
    (re.compile(r"openai|gpt|dall-?e|whisper.*openai", re.IGNORECASE), "Azure OpenAI"),
    (re.compile(r"speech|text to speech|speech to text", re.IGNORECASE), "Azure AI Speech"),
]


def service_group(name: str) -> str:
    for pattern, group in SERVICE_GROUPS:
        if pattern.search(name or ""):
            return group
    return name


def query_body(kind: str, start: dt.date, end: dt.date) -> dict[str, Any]:
    return {
        "type": kind,
        "timeframe": "Custom",
        "timePeriod": {"from": f"{start.isoformat()}T00:00:00Z", "to": f"{(end - dt.timedelta(days=1)).isoformat()}T23:59:59Z"},
        "dataset": {
            "granularity": "Daily",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [{"type": "Dimension", "name": "ResourceId"}, {"type": "Dimension", "name": "ServiceName"}],
        },
    }


class AzureApi:
    def __init__(self, client: ApiClient, scopes: list[str], url: str = MANAGEMENT_URL):
        self.client = client
        self.scopes = [s.strip().strip("/") for s in scopes if s.strip()]
        self.url = url.rstrip("/")

    def query(self, scope: str, kind: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        body = query_body(kind, start, end)
        url: str | None = f"{self.url}/{scope}/providers/Microsoft.CostManagement/query?api-version={API_VERSION}"
        frames = []
        while url:
            doc = self.client.post_json(url, body)
            frames.append(rows_frame(doc, self.client.partition))
            url = (doc.get("properties") or {}).get("nextLink") or None
        return pd.concat(frames, ignore_index=True)

    def ping(self) -> str:
        seen = []
        for scope in self.scopes:
            yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
            self.query(scope, "ActualCost", yesterday, yesterday + dt.timedelta(days=1))
            seen.append(scope)
        return f"{len(seen)} scope(s) readable"


def rows_frame(doc: Any, partition: str | None) -> pd.DataFrame:
    columns = require(doc, "properties.columns", source=SOURCE, partition=partition, kind=list)
    rows = require(doc, "properties.rows", source=SOURCE, partition=partition, kind=list)
    names = [str(c.get("name", "")) if isinstance(c, dict) else "" for c in columns]
    lower = {n.lower(): i for i, n in enumerate(names)}
    cost_name = next((n for n in COST_COLUMNS if n.lower() in lower), None)
    if cost_name is None:
        raise PoloInputError("no cost column", source=SOURCE, field="properties.columns[Cost|PreTaxCost]", partition=partition)
    for needed in ("UsageDate", "ResourceId", "ServiceName"):
        if needed.lower() not in lower:
            raise PoloInputError("a column is missing", source=SOURCE, field=f"properties.columns[{needed}]", partition=partition)
    frame = pd.DataFrame(rows, columns=names) if rows else pd.DataFrame(columns=names)
    out = pd.DataFrame(
        {
            "usage_date": frame.iloc[:, lower["usagedate"]],
            "resource_id": frame.iloc[:, lower["resourceid"]].fillna("").astype(str).str.lower(),
            "service": frame.iloc[:, lower["servicename"]].fillna("").astype(str),
            "cost": pd.to_numeric(frame.iloc[:, lower[cost_name.lower()]], errors="coerce"),
            "currency": frame.iloc[:, lower["currency"]].astype(str)
            if "currency" in lower
            else ("USD" if cost_name.endswith("USD") else ""),
        }
    )
    if out["cost"].isna().any():
        raise PoloInputError("a cost is not a number", source=SOURCE, field=f"properties.rows[].{cost_name}", partition=partition)
    try:
        out["day"] = [
            dt.datetime.strptime(str(int(v)) if isinstance(v, (int, float)) else str(v)[:10].replace("-", ""), "%Y%m%d").date()
            for v in out["usage_date"]
        ]
    except (TypeError, ValueError):
        raise PoloInputError("unreadable UsageDate", source=SOURCE, field="properties.rows[].UsageDate", partition=partition) from None
    return out.drop(columns="usage_date")


@dataclass
class AzureWindow:
    events: pd.DataFrame
    rows: int = 0
    requests: int = 0
    scopes: list[str] = field(default_factory=list)


def collect(api: AzureApi, start: dt.date, end: dt.date, fx_rates: dict[str, float] | None = None) -> AzureWindow:
    keys = ["scope", "day", "resource_id", "service", "currency"]
    frames, rows = [], 0
    for scope in api.scopes:
        actual = api.query(scope, "ActualCost", start, end)
        amortized = api.query(scope, "AmortizedCost", start, end)
        rows += len(actual) + len(amortized)
        actual, amortized = actual.assign(scope=scope.lower()), amortized.assign(scope=scope.lower())
        both = (
            amortized.groupby(keys, as_index=False)["cost"]
            .sum()
            .rename(columns={"cost": "amortized"})
            .merge(actual.groupby(keys, as_index=False)["cost"].sum().rename(columns={"cost": "actual"}), on=keys, how="outer")
            .fillna({"amortized": 0.0, "actual": 0.0})
        )
        frames.append(both[(both["day"] >= start) & (both["day"] < end)])
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return AzureWindow(normalize(frame, fx_rates or {}, api.client.partition), rows, api.client.requests_made, list(api.scopes))


def normalize(frame: pd.DataFrame, fx_rates: dict[str, float], partition: str | None) -> pd.DataFrame:
    if frame.empty:
        return empty_events()
    frame = frame[(frame["amortized"] != 0) | (frame["actual"] != 0)].reset_index(drop=True)
    currency = frame["currency"].replace("", "USD").str.upper()
    rates = {"USD": 1.0, **fx_rates}
    unknown = sorted(set(currency) - set(rates))
    if unknown:
        raise PoloInputError(f"costs in {', '.join(unknown)} need POLO_FX_RATES", source=SOURCE, field="Currency", partition=partition)
    rate = currency.map(rates).to_numpy(dtype="float64")
    has_id = frame["resource_id"] != ""
    fallback = "azure:" + frame["scope"] + "/" + frame["service"].str.lower().str.replace(" ", "-")
    ids = np.where(has_id, frame["resource_id"], fallback)
    names = np.where(has_id, frame["resource_id"].str.rsplit("/", n=1).str[-1], frame["service"])
    types = np.where(has_id, frame["resource_id"].str.extract(r"/providers/([^/]+/[^/]+)/", expand=False).fillna("resource"), "service")
    props = [
        {
            "service_group": service_group(s),
            "subscription": _part(r, "subscriptions"),
            "resource_group": _part(r, "resourcegroups"),
            "currency": c,
            "scope": sc,
        }
        for s, r, c, sc in zip(frame["service"], frame["resource_id"], currency, frame["scope"])
    ]
    return cost_events(
        resource_arn=ids,
        resource_type=types,
        resource_name=names,
        day=pd.to_datetime(frame["day"]),
        charge_category="Usage",
        value=frame["amortized"].to_numpy() * rate,
        billed_cost=frame["actual"].to_numpy() * rate,
        list_cost=frame["actual"].to_numpy() * rate,
        service=frame["service"].to_numpy(),
        provider="Microsoft",
        properties=props,
        collector=COLLECTOR,
    )


def _part(resource_id: str, key: str) -> str:
    parts = resource_id.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == key:
            return parts[i + 1]
    return ""


def token(client: ApiClient, authority: str, tenant: str, client_id: str, client_secret: str) -> str:
    """An AAD access token for Azure Resource Manager (client-credentials flow)."""
    response = client.request(
        "POST",
        f"{authority.rstrip('/')}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": "https://management.azure.com/.default",
        },
    )
    doc = client.decode(response, authority)
    return str(require(doc, "access_token", source=SOURCE, partition=client.partition))
