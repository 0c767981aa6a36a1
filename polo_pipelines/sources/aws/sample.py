"""Render the sample world's AWS charges as real export files: CUR 2.0 (default) or legacy CUR v1.

CUR 2.0 layout (what Data Exports writes, "create new file" delivery):
``{root}/metadata/BILLING_PERIOD=YYYY-MM/{export}-Manifest.json`` listing
``s3://{bucket}/{prefix}/{export}/data/BILLING_PERIOD=YYYY-MM/{ts}-{execution}/{export}-0000N.snappy.parquet``.
Legacy layout: ``{root}/YYYYMMDD-YYYYMMDD/{report}-Manifest.json`` with ``reportKeys``, files as
Parquet with flattened ``resource_tags_user_*`` columns or CSV with ``lineItem/...`` headers.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from polo_pipelines.sources.sample.world import PAYER, REGION, LineItem

SAMPLE_BUCKET = "polo-sample-billing"
SAMPLE_PREFIX = "cur"
SAMPLE_EXPORT = "polo-sample"

_MAP = pa.map_(pa.string(), pa.string())
_TS = pa.timestamp("ms", tz="UTC")


def cur2_table(items: Iterable[LineItem]) -> pa.Table:
    rows = list(items)
    starts = [pd.Timestamp(i.day, tz="UTC") for i in rows]
    periods = [pd.Timestamp(i.day.replace(day=1), tz="UTC") for i in rows]
    tag_maps = [[(_cur2_tag_key(k), v) for k, v in i.tags] for i in rows]
    product = [[("region", REGION)] + ([("instance_type", i.instance_type)] if i.instance_type else []) for i in rows]
    columns = {
        "identity_line_item_id": pa.array([_line_id(i) for i in rows]),
        "bill_billing_period_start_date": pa.array(periods, type=_TS),
        "bill_payer_account_id": pa.array([PAYER] * len(rows)),
        "line_item_usage_start_date": pa.array(starts, type=_TS),
        "line_item_usage_end_date": pa.array([s + pd.Timedelta(days=1) for s in starts], type=_TS),
        "line_item_usage_account_id": pa.array([i.account for i in rows]),
        "line_item_line_item_type": pa.array([i.line_item_type for i in rows]),
        "line_item_product_code": pa.array([i.product for i in rows]),
        "line_item_usage_type": pa.array([i.usage_type for i in rows]),
        "line_item_operation": pa.array([i.operation for i in rows]),
        "line_item_resource_id": pa.array([i.resource_id for i in rows]),
        "line_item_usage_amount": pa.array([i.usage_amount for i in rows], type=pa.float64()),
        "line_item_unblended_cost": pa.array([i.unblended for i in rows], type=pa.float64()),
        "line_item_currency_code": pa.array(["USD"] * len(rows)),
        "product_region_code": pa.array(
            ["" if i.product in ("AWSSupportBusiness",) or i.line_item_type in ("Tax", "Credit") else REGION for i in rows]
        ),
        "product": pa.array(product, type=_MAP),
        "pricing_public_on_demand_cost": pa.array([i.public_cost for i in rows], type=pa.float64()),
        "savings_plan_savings_plan_effective_cost": pa.array([i.sp_effective for i in rows], type=pa.float64()),
        "savings_plan_total_commitment_to_date": pa.array([i.sp_commitment for i in rows], type=pa.float64()),
        "savings_plan_used_commitment": pa.array([i.sp_used for i in rows], type=pa.float64()),
        "resource_tags": pa.array(tag_maps, type=_MAP),
    }
    return pa.table(columns)


def _cur2_tag_key(key: str) -> str:
    # Data Exports spells user tags as user_<key> inside the map (assumed; the reader accepts both).
    return key if key.startswith("aws:") else f"user_{key}"


def _line_id(item: LineItem) -> str:
    raw = f"{item.day}|{item.account}|{item.product}|{item.usage_type}|{item.resource_id}|{item.line_item_type}"
    return hashlib.sha1(raw.encode()).hexdigest()[:26]


def _by_period(items: Iterable[LineItem]) -> dict[str, list[LineItem]]:
    out: dict[str, list[LineItem]] = {}
    for item in items:
        out.setdefault(item.day.strftime("%Y-%m"), []).append(item)
    return out


def write_cur2(
    items: Iterable[LineItem],
    root: Path,
    *,
    export: str = SAMPLE_EXPORT,
    bucket: str = SAMPLE_BUCKET,
    prefix: str = SAMPLE_PREFIX,
    files_per_period: int = 2,
    delivered_at: dt.datetime | None = None,
) -> list[Path]:
    """Write one delivery per billing period under ``root`` (the export's folder); return the manifests."""
    delivered_at = delivered_at or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    manifests = []
    for period, rows in sorted(_by_period(items).items()):
        table = cur2_table(rows)
        execution = hashlib.sha1(f"{export}|{period}|{delivered_at.isoformat()}".encode()).hexdigest()[:12]
        folder = f"data/BILLING_PERIOD={period}/{delivered_at:%Y-%m-%dT%H%M%S.000Z}-{execution}"
        uris = []
        chunk = -(-table.num_rows // files_per_period)
        for n in range(files_per_period):
            part = table.slice(n * chunk, chunk)
            name = f"{export}-{n + 1:05d}.snappy.parquet"
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, path, compression="snappy")
            uris.append(f"s3://{bucket}/{prefix}/{export}/{folder}/{name}")
        manifest = {
            "executionId": execution,
            "exportArn": f"arn:aws:bcm-data-exports:us-east-1:{PAYER}:export/{export}-{execution}",
            "billingPeriod": period,
            "columns": [{"name": f.name, "type": _type_name(f.type)} for f in table.schema],
            "dataFiles": uris,
        }
        path = root / f"metadata/BILLING_PERIOD={period}/{export}-Manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=2))
        manifests.append(path)
    return manifests


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_map(t):
        return "map<string,string>"
    return "string"


LEGACY_HEADERS = {
    "identity_line_item_id": "identity/LineItemId",
    "bill_payer_account_id": "bill/PayerAccountId",
    "bill_billing_period_start_date": "bill/BillingPeriodStartDate",
    "line_item_usage_start_date": "lineItem/UsageStartDate",
    "line_item_usage_end_date": "lineItem/UsageEndDate",
    "line_item_usage_account_id": "lineItem/UsageAccountId",
    "line_item_line_item_type": "lineItem/LineItemType",
    "line_item_product_code": "lineItem/ProductCode",
    "line_item_usage_type": "lineItem/UsageType",
    "line_item_operation": "lineItem/Operation",
    "line_item_resource_id": "lineItem/ResourceId",
    "line_item_usage_amount": "lineItem/UsageAmount",
    "line_item_unblended_cost": "lineItem/UnblendedCost",
    "line_item_currency_code": "lineItem/CurrencyCode",
    "product_region_code": "product/region",
    "product_instance_type": "product/instanceType",
    "pricing_public_on_demand_cost": "pricing/publicOnDemandCost",
    "savings_plan_savings_plan_effective_cost": "savingsPlan/SavingsPlanEffectiveCost",
    "savings_plan_total_commitment_to_date": "savingsPlan/TotalCommitmentToDate",
    "savings_plan_used_commitment": "savingsPlan/UsedCommitment",
}


def legacy_frame(items: Iterable[LineItem]) -> pd.DataFrame:
    """Legacy CUR columns in snake_case, tags flattened into ``resource_tags_user_*`` columns."""
    table = cur2_table(items)
    frame = table.drop_columns(["resource_tags", "product"]).to_pandas()
    frame = frame.rename(columns={"product_region_code": "product_region"})
    frame["product_instance_type"] = [dict(p).get("instance_type", "") for p in table.column("product").to_pylist()]
    tags = [dict(t) for t in table.column("resource_tags").to_pylist()]
    keys = sorted({k for t in tags for k in t})
    for key in keys:
        column = "resource_tags_" + (key if key.startswith("user_") else key.replace(":", "_"))
        frame[column] = [t.get(key, "") for t in tags]
    return frame


def write_legacy(items: Iterable[LineItem], root: Path, *, report: str = SAMPLE_EXPORT, fmt: str = "parquet") -> list[Path]:
    """Legacy CUR v1 layout with manifests; ``fmt`` is ``parquet`` or ``csv`` (gzipped, ``lineItem/...`` headers)."""
    manifests = []
    for period, rows in sorted(_by_period(items).items()):
        first = dt.date(int(period[:4]), int(period[5:]), 1)
        nxt = (first + dt.timedelta(days=32)).replace(day=1)
        folder = f"{first:%Y%m%d}-{nxt:%Y%m%d}"
        assembly = hashlib.sha1(f"{report}|{period}".encode()).hexdigest()[:16]
        frame = legacy_frame(rows)
        if fmt == "parquet":
            name = f"{report}-00001.snappy.parquet"
            path = root / folder / assembly / name
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(path, index=False)
        else:
            name = f"{report}-1.csv.gz"
            path = root / folder / assembly / name
            path.parent.mkdir(parents=True, exist_ok=True)
            csv = frame.rename(columns=_legacy_csv_header)
            for col in ("lineItem/UsageStartDate", "lineItem/UsageEndDate", "bill/BillingPeriodStartDate"):
                csv[col] = pd.to_datetime(csv[col]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            path.write_bytes(gzip.compress(csv.to_csv(index=False).encode()))
        manifest = {
            "assemblyId": assembly,
            "account": PAYER,
            "bucket": SAMPLE_BUCKET,
            "billingPeriod": {"start": f"{first:%Y%m%d}T000000.000Z", "end": f"{nxt:%Y%m%d}T000000.000Z"},
            "reportKeys": [f"{SAMPLE_PREFIX}/{report}/{folder}/{assembly}/{name}"],
        }
        mpath = root / folder / f"{report}-Manifest.json"
        mpath.write_text(json.dumps(manifest, indent=2))
        manifests.append(mpath)
    return manifests


def _legacy_csv_header(column: str) -> str:
    if column in LEGACY_HEADERS:
        return LEGACY_HEADERS[column]
    if column == "product_region":
        return "product/region"
    if column.startswith("resource_tags_user_"):
        return "resourceTags/user:" + column[len("resource_tags_user_") :]
    if column.startswith("resource_tags_aws_"):
        return "resourceTags/aws:" + column[len("resource_tags_aws_") :]
    return column


def export_root(root: Path | None = None) -> Path:
    """Where the sample world's CUR 2.0 export lies under the sample folder (``root``, default POLO_HOME's)."""
    from polo_pipelines.settings import sample_dir

    return (root or sample_dir()) / "aws" / "cur" / SAMPLE_EXPORT


def write_files(world, root: Path) -> None:
    """The sample world's line items as a CUR 2.0 export under ``root``."""
    write_cur2(world.line_items(), export_root(root))


def sample_source():
    """The AWS source, reading the sample world's CUR 2.0 export (written first if absent)."""
    from polo_pipelines.sources import sample
    from polo_pipelines.sources.aws.source import AwsCostSource

    if sample.sample_window() is None:
        sample.write_sample()
    return AwsCostSource(export_uri=str(export_root()))
