"""GCP costs: the Cloud Billing export in BigQuery (standard or detailed), read with the google-cloud-bigquery client.

One parameterized query per window groups the export's rows by day, project, service, SKU,
resource (detailed export: ``resource.global_name``), region, cost type, currency and labels,
summing cost and gathering the rows' credits; Python then writes:

- a cost row per group (``charge_category`` from ``cost_type``: regular -> Usage,
  tax -> Tax, adjustment and rounding error -> Adjustment);
- a row per credit type of the group. Discount-like credits (sustained and committed use,
  free tier, discounts, subscription benefits, reseller margin) stay in ``Usage``: they are
  what the resource really costs, so deltas see net cost. Promotions and unknown types are
  ``Credit`` (excluded from deltas by default, like AWS credits).
  ``properties['credit_type']`` names each.

Amounts are in the billing currency; each row's own ``currency_conversion_rate`` (currency
units per USD) converts it. Rows for a day keep arriving for days: the daily lookback
re-reads recent days, and the query selects by usage day (with a partition filter on
``_PARTITIONTIME`` from the window's start when the table is partitioned, which it is for
every export created by Cloud Billing).

Resource ids: the resource's global name where the detailed export has one, else
``gcp:{project}/{service}`` (``gcp:billing-account/{service}`` for rows with no project).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.store.events import cost_events, empty_events

COLLECTOR = "cost_gcp"
SOURCE = "gcp"
TABLE = re.compile(r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")
CATEGORY = {"regular": "Usage", "tax": "Tax", "adjustment": "Adjustment", "rounding_error": "Adjustment", "rounding error": "Adjustment"}
DISCOUNT_CREDITS = {
    "SUSTAINED_USAGE_DISCOUNT",
    "COMMITTED_USAGE_DISCOUNT",
    "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE",
    "FREE_TIER",
    "DISCOUNT",
    "SUBSCRIPTION_BENEFIT",
    "RESELLER_MARGIN",
    "FEE_UTILIZATION_OFFSET",
}
COLUMNS = (
    "day",
    "project_id",
    "service",
    "sku",
    "resource_name",
    "region",
    "cost_type",
    "currency",
    "currency_conversion_rate",
    "labels",
    "cost",
    "credits",
)


def query_sql(table: str, *, detailed: bool, partitioned: bool = True) -> str:
    """The window's query. The table name is checked, then quoted; every value is a query parameter."""
    if not TABLE.match(table):
        raise ValueError(f"GCP billing table must be project.dataset.table, got {table!r}")
    resource = "IFNULL(resource.global_name, '')" if detailed else "''"
    partition = "AND _PARTITIONTIME >= TIMESTAMP(DATE_SUB(@start, INTERVAL 1 DAY))" if partitioned else ""
    return f"""
SELECT
  DATE(usage_start_time) AS day,
  IFNULL(project.id, '') AS project_id,
  service.description AS service,
  sku.description AS sku,
  {resource} AS resource_name,
  IFNULL(location.region, '') AS region,
  IFNULL(cost_type, 'regular') AS cost_type,
  currency,
  currency_conversion_rate,
  TO_JSON_STRING(labels) AS labels,
  IFNULL(TO_JSON_STRING(project.ancestors), '[]') AS project_ancestors,
  SUM(cost) AS cost,
  ARRAY_CONCAT_AGG(credits) AS credits
FROM `{table}`
WHERE DATE(usage_start_time) BETWEEN @start AND @end_day {partition}
GROUP BY day, project_id, service, sku, resource_name, region, cost_type, currency, currency_conversion_rate, labels, project_ancestors
""".strip()


@dataclass
class GcpWindow:
    events: pd.DataFrame
    groups: int = 0
    bytes_processed: int = 0


def run_query(
    client,
    table: str,
    start: dt.date,
    end: dt.date,
    *,
    detailed: bool,
    partitioned: bool = True,
    page_size: int | None = None,
    retry_timeout: float = 300.0,
):
    from google.cloud import bigquery
    from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("start", "DATE", start),
            bigquery.ScalarQueryParameter("end_day", "DATE", end - dt.timedelta(days=1)),
        ]
    )
    # the client's own retries (backoff with jitter on 429/5xx), bounded like every other platform's waits
    return client.query_and_wait(
        query_sql(table, detailed=detailed, partitioned=partitioned),
        job_config=config,
        page_size=page_size,
        api_timeout=60.0,
        retry=DEFAULT_RETRY.with_timeout(retry_timeout),
        job_retry=DEFAULT_JOB_RETRY.with_timeout(retry_timeout),
    )


def collect(
    client,
    table: str,
    start: dt.date,
    end: dt.date,
    *,
    detailed: bool,
    partitioned: bool = True,
    partition: str | None = None,
    page_size: int | None = None,
    retry_timeout: float = 300.0,
) -> GcpWindow:
    from google.api_core import exceptions as gexc

    from polo_pipelines.sources.http import SourceUnavailable

    try:
        rows = run_query(
            client, table, start, end, detailed=detailed, partitioned=partitioned, page_size=page_size, retry_timeout=retry_timeout
        )
        records = [dict(row.items()) for row in rows]
    except (gexc.Unauthorized, gexc.Forbidden, gexc.NotFound, gexc.BadRequest) as exc:
        raise PoloInputError(
            f"BigQuery refused the query on {table}: {exc.code} {_short(exc)}", source=SOURCE, partition=partition
        ) from None
    except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError) as exc:
        raise SourceUnavailable(f"BigQuery kept failing on {table}: {_short(exc)}", source=SOURCE, partition=partition) from None
    return GcpWindow(normalize(records, start, end, partition), len(records), int(getattr(rows, "total_bytes_processed", 0) or 0))


def credential_secrets(credentials) -> tuple[str, ...]:
    """What of the client's credentials is secret: its key, the key's id, the access token it holds."""
    if credentials is None:
        return ()
    signer = getattr(credentials, "_signer", None)
    key = getattr(signer, "_key", None)
    pem = ""
    if key is not None and hasattr(key, "private_bytes"):
        from cryptography.hazmat.primitives import serialization

        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return tuple(v for v in (getattr(credentials, "token", None), getattr(signer, "key_id", None), pem) if v)


def authenticate(client, partition: str | None) -> None:
    """Get the access token before the query, so a refused or garbled token answer is named as such (and scrubbed),
    not retried for minutes inside the query's retries."""
    credentials = getattr(client, "_credentials", None)
    if credentials is None or type(credentials).__name__ == "AnonymousCredentials" or getattr(credentials, "valid", False):
        return
    import google.auth.exceptions as gauth
    import google.auth.transport.requests

    from polo_pipelines.sources.http import SourceUnavailable, scrub

    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except gauth.RefreshError as exc:
        reason = scrub(" ".join(str(exc).split())[:300], credential_secrets(credentials))
        raise PoloInputError(f"the service account's token request was refused: {reason}", source=SOURCE, partition=partition) from None
    except gauth.TransportError as exc:
        raise SourceUnavailable(f"the token endpoint did not answer: {type(exc).__name__}", source=SOURCE, partition=partition) from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise PoloInputError(
            f"the token endpoint answered something that is not a token ({type(exc).__name__})", source=SOURCE, partition=partition
        ) from None


def _short(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "message", exc)).split())
    return re.sub(r"^[A-Z]+ \S+: ", "", text)[:300]  # the request line adds nothing to the reason


def normalize(records: list[dict[str, Any]], start: dt.date, end: dt.date, partition: str | None) -> pd.DataFrame:
    if not records:
        return empty_events()
    for name in COLUMNS:
        if name not in records[0]:
            raise PoloInputError("query result is missing a column", source=SOURCE, field=name, partition=partition)
    optional = [c for c in ("project_ancestors",) if c in records[0]]  # exports from before the column have none
    frame = pd.DataFrame(records, columns=[*COLUMNS, *optional])
    frame = frame[(frame["day"] >= start) & (frame["day"] < end)].reset_index(drop=True)
    rate = pd.to_numeric(frame["currency_conversion_rate"], errors="coerce")
    usd = frame["currency"].astype(str).str.upper() == "USD"
    rate = rate.where(~usd, 1.0)
    if (rate.isna() | (rate <= 0)).any():
        raise PoloInputError(
            "a row in a non-USD currency has no conversion rate", source=SOURCE, field="currency_conversion_rate", partition=partition
        )
    frame["rate"] = rate

    rows = []  # (group index, category, credit type, amount in billing currency)
    for i, (cost, cost_type, credits) in enumerate(zip(frame["cost"], frame["cost_type"], frame["credits"])):
        rows.append((i, CATEGORY.get(str(cost_type).lower(), "Adjustment"), "", float(cost or 0.0)))
        by_type: dict[str, float] = {}
        for credit in credits or []:
            kind = str(credit.get("type") or "PROMOTION").upper()
            by_type[kind] = by_type.get(kind, 0.0) + float(credit.get("amount") or 0.0)
        rows.extend(
            (i, "Usage" if kind in DISCOUNT_CREDITS else "Credit", kind, amount) for kind, amount in sorted(by_type.items()) if amount
        )
    charges = pd.DataFrame(rows, columns=["group", "category", "credit_type", "amount"])
    charges = charges[(charges["amount"] != 0) | (charges["credit_type"] == "")]
    g = frame.loc[charges["group"].to_numpy()].reset_index(drop=True)
    charges = charges.reset_index(drop=True)
    value = charges["amount"].to_numpy() / g["rate"].to_numpy(dtype="float64")

    has_resource = g["resource_name"].astype(str) != ""
    service_slug = g["service"].astype(str).str.lower().str.replace(r"[^a-z0-9]+", "-", regex=True).str.strip("-")
    fallback = "gcp:" + g["project_id"].replace("", "billing-account") + "/" + service_slug
    ids = np.where(has_resource, g["resource_name"], fallback)
    names = np.where(has_resource, g["resource_name"].astype(str).str.rsplit("/", n=1).str[-1], g["project_id"] + " " + g["service"])
    ancestry = {text: ancestry_property(text, partition) for text in set(g.get("project_ancestors", pd.Series("[]", index=g.index)))}
    chains = [ancestry[t] for t in g.get("project_ancestors", pd.Series("[]", index=g.index))]
    props = []
    for sku, project, region, currency, credit_type, labels, chain in zip(
        g["sku"], g["project_id"], g["region"], g["currency"], charges["credit_type"], g["labels"], chains
    ):
        item = {"sku": str(sku), "project": project, "region": region, "currency": str(currency), "credit_type": credit_type}
        if chain:
            item[ANCESTRY] = chain
        item.update(_labels(labels, partition))
        props.append(item)
    return cost_events(
        resource_arn=ids,
        resource_type=np.where(
            has_resource,
            g["resource_name"].astype(str).str.extract(r"//([a-z0-9]+)\.googleapis\.com", expand=False).fillna("resource"),
            "service",
        ),
        resource_name=names,
        day=pd.to_datetime(g["day"]),
        charge_category=charges["category"].to_numpy(),
        value=value,
        billed_cost=value,
        list_cost=np.where(charges["credit_type"] == "", value, 0.0),
        service=g["service"].astype(str).to_numpy(),
        provider="Google Cloud",
        properties=props,
        collector=COLLECTOR,
    )


ANCESTRY = "gcp_ancestry"  # the project's place in the resource hierarchy, organization first: see ancestry_property


def ancestry_property(text: Any, partition: str | None) -> str:
    """``project.ancestors`` (a list of {resource_name, display_name}) as one property value, organization first:
    ``organizations/1=Example Corp>folders/2=Data>projects/3=ml-training``. The export lists the project first and
    its organization last; a list given the other way round is read the same, by where its project and organization
    are."""
    if not text:
        return ""
    try:
        items = json.loads(text) if isinstance(text, str) else text
        pairs = [(str(a["resource_name"]), str(a.get("display_name") or a["resource_name"])) for a in items or []]
    except (ValueError, TypeError, KeyError):
        raise PoloInputError(
            "project ancestors are not a list of {resource_name, display_name}",
            source=SOURCE,
            field="project.ancestors",
            partition=partition,
        ) from None
    if pairs and (pairs[0][0].startswith("projects/") or pairs[-1][0].startswith("organizations/")):
        pairs.reverse()
    return ">".join(f"{name}={shown.replace('>', ' ')}" for name, shown in pairs)


def _labels(text: Any, partition: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        pairs = json.loads(text) if isinstance(text, str) else text
        return {f"tag:{p['key']}": str(p.get("value") or "") for p in pairs or []}
    except (ValueError, TypeError, KeyError):
        raise PoloInputError("labels are not a list of {key, value}", source=SOURCE, field="labels", partition=partition) from None
