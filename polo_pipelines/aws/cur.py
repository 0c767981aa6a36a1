"""AWS cost and usage exports (CUR 2.0 Data Exports and legacy CUR v1) read into daily cost events.

Reading is manifest-driven: the files of a billing period are the ones its manifest lists
(with "create new file" delivery older deliveries stay in S3 but are no longer current).
Columns are read by name: CUR 2.0 Parquet (snake_case, ``resource_tags`` map), legacy
Parquet (snake_case, tags flattened into ``resource_tags_user_*``) and legacy CSV
(``lineItem/UnblendedCost`` headers) all become one canonical frame; absent optional
columns are tolerated, extra ones ignored.

Normalising is vectorised (pyarrow/pandas): one cost event per resource per day per
charge category, ``value`` the effective (amortized, net where the export has net columns)
cost, billed and list cost beside it.

Resource ids: ``line_item_resource_id`` when it is an ARN; bare ids become ARNs (``i-…`` →
``arn:aws:ec2:{region}:{account}:instance/i-…``, S3 bucket names → ``arn:aws:s3:::{bucket}``,
other bare ids → ``arn:aws:{service}:{region}:{account}:{id}``). Line items without a
resource id are attributed to the service-level id ``aws:{account}/{product_code}/{region}``
(``global`` where the line has no region), resource type ``aws:service``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from polo_pipelines.errors import PoloInputError
from polo_pipelines.events import conform, empty_events, window_label
from polo_pipelines.files import numeric, read_table, utc_timestamps, window_mask
from polo_pipelines.locations import Location, MissingFile

COLLECTOR = "cost_aws"

START = "line_item_usage_start_date"
REQUIRED = (
    START,
    "line_item_usage_account_id",
    "line_item_line_item_type",
    "line_item_product_code",
    "line_item_unblended_cost",
    "line_item_currency_code",
)
STRING_COLUMNS = (
    "line_item_usage_account_id",
    "line_item_line_item_type",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_resource_id",
    "line_item_currency_code",
    "product_region_code",
    "product_region",
    "product_instance_type",
)
NUMERIC_COLUMNS = (
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_usage_amount",
    "pricing_public_on_demand_cost",
    "reservation_effective_cost",
    "reservation_net_effective_cost",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_net_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_recurring_fee",
    "reservation_net_unused_recurring_fee",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_net_savings_plan_effective_cost",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
)

# Line item type -> FOCUS charge category.
CHARGE_CATEGORY = {
    "Usage": "Usage",
    "DiscountedUsage": "Usage",
    "SavingsPlanCoveredUsage": "Usage",
    "SavingsPlanNegation": "Usage",
    "SavingsPlanUpfrontFee": "Purchase",
    "SavingsPlanRecurringFee": "Purchase",
    "RIFee": "Purchase",
    "Fee": "Purchase",
    "Tax": "Tax",
    "Credit": "Credit",
    "Refund": "Adjustment",
    "EdpDiscount": "Credit",
    "BundledDiscount": "Credit",
    "PrivateRateDiscount": "Credit",
    "RiVolumeDiscount": "Credit",
}

EC2_ID_TYPES = {
    "i": "instance",
    "vol": "volume",
    "snap": "snapshot",
    "eni": "network-interface",
    "nat": "natgateway",
    "eipalloc": "elastic-ip",
    "ami": "image",
    "vpce": "vpc-endpoint",
}


@dataclass(frozen=True)
class Manifest:
    path: str
    kind: str  # "cur2" or "legacy"
    files: tuple[str, ...]


@dataclass
class CurBatch:
    """Line items of one window: scalar columns as a frame, tags kept columnar for later."""

    frame: pd.DataFrame
    tags: list[pa.ChunkedArray | None] = field(default_factory=list)  # per file, aligned to frame chunks
    sources: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- manifests


def billing_periods(start: dt.date, end_exclusive: dt.date) -> list[str]:
    periods, cursor = [], start.replace(day=1)
    while cursor < end_exclusive:
        periods.append(cursor.strftime("%Y-%m"))
        cursor = (cursor + dt.timedelta(days=32)).replace(day=1)
    return periods


def manifest_candidates(export_name: str, period: str) -> list[tuple[str, str]]:
    year, month = int(period[:4]), int(period[5:7])
    first = dt.date(year, month, 1)
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    legacy_folder = f"{first:%Y%m%d}-{nxt:%Y%m%d}"
    return [
        ("cur2", f"metadata/BILLING_PERIOD={period}/{export_name}-Manifest.json"),
        ("legacy", f"{legacy_folder}/{export_name}-Manifest.json"),
    ]


def read_manifest(location: Location, export_name: str, period: str, partition: str) -> Manifest:
    candidates = manifest_candidates(export_name, period)
    for kind, path in candidates:
        if not location.exists(path):
            continue
        raw = location.read_bytes(path)
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PoloInputError(f"manifest is not JSON: {exc.msg}", source=f"{location.uri}/{path}", partition=partition) from None
        key = "dataFiles" if kind == "cur2" else "reportKeys"
        refs = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise PoloInputError(
                f"manifest has no list of data files", source=f"{location.uri}/{path}", field=key, partition=partition
            )
        files = tuple(location.resolve(ref, export_name) for ref in refs)
        return Manifest(path=path, kind=kind, files=files)
    raise PoloInputError(
        f"no manifest for billing period {period} (looked for {', '.join(p for _, p in candidates)})",
        source=location.uri,
        field="manifest",
        partition=partition,
    )


# ---------------------------------------------------------------- reading files

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    """``lineItem/UnblendedCost`` -> ``line_item_unblended_cost`` (legacy CSV headers)."""
    return "_".join(_CAMEL.sub("_", part).lower() for part in name.split("/"))


def tag_key(column: str) -> str | None:
    """The tag key a column carries, or None: ``resourceTags/user:team``, ``resource_tags_user_team``."""
    if column.startswith("resourceTags/"):
        key = column[len("resourceTags/") :]
        return key[5:] if key.startswith("user:") else key
    if column.startswith("resource_tags_"):
        key = column[len("resource_tags_") :]
        return key[5:] if key.startswith("user_") else key
    return None


def _strip_tag_prefix(key: str) -> str:
    return key[5:] if key.startswith(("user_", "user:")) else key


def canonical_columns(table: pa.Table) -> pa.Table:
    """Rename legacy CSV headers to snake_case and tag columns to ``tag:{key}``."""
    names = []
    for col in table.column_names:
        key = tag_key(col)
        if key is not None and col != "resource_tags":
            names.append(f"tag:{key}")
        elif "/" in col:
            names.append(snake(col))
        else:
            names.append(col)
    return table.rename_columns(names)


def read_window(
    location: Location,
    relpath: str,
    start: dt.date,
    end_exclusive: dt.date,
    partition: str,
) -> tuple[pd.DataFrame, pa.ChunkedArray | None, list[str]]:
    """One data file's line items in [start, end): the scalar frame, the tag map column, flat tag columns."""
    source = f"{location.uri}/{relpath}"
    try:
        raw = location.read_bytes(relpath)
    except MissingFile as exc:
        raise PoloInputError(f"data file named by the manifest is missing ({exc})", source=source, partition=partition) from None
    table = canonical_columns(read_table(raw, relpath, source, partition))
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise PoloInputError(f"required column {missing[0]} is missing", source=source, field=missing[0], partition=partition)

    starts = utc_timestamps(table.column(START), source=source, field=START, partition=partition)
    if starts.null_count:
        raise PoloInputError(f"{starts.null_count} line item(s) without a usage start date", source=source, field=START, partition=partition)
    mask = window_mask(starts, start, end_exclusive)
    table = table.filter(mask)
    starts = starts.filter(mask)

    flat_tags = [c for c in table.column_names if c.startswith("tag:")]
    frame = pd.DataFrame({"usage_start": starts.to_pandas()})
    for col in STRING_COLUMNS:
        if col in table.column_names:
            frame[col] = table.column(col).cast(pa.string()).to_pandas()
    for col in NUMERIC_COLUMNS:
        if col in table.column_names:
            frame[col] = numeric(table.column(col))
    for col in flat_tags:
        frame[col] = table.column(col).cast(pa.string()).to_pandas()
    tag_map = table.column("resource_tags") if "resource_tags" in table.column_names else None
    product_map = table.column("product") if "product" in table.column_names else None
    if product_map is not None and "product_instance_type" not in frame and pa.types.is_map(product_map.type):
        frame["product_instance_type"] = _map_lookup(product_map, "instance_type")
    if tag_map is not None and pa.types.is_string(tag_map.type):
        tag_map = _json_maps(tag_map, source, partition)
    return frame, tag_map, flat_tags


def _map_lookup(array: pa.ChunkedArray, key: str) -> pd.Series:
    values = pc.map_lookup(array, pa.scalar(key, type=array.type.key_type), "first")
    return values.cast(pa.string()).to_pandas()


def _json_maps(array: pa.ChunkedArray, source: str, partition: str) -> pa.ChunkedArray:
    """CSV exports carry map columns as JSON text."""
    out = []
    for text in array.to_pylist():
        if not text:
            out.append([])
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise PoloInputError("resource_tags is not a JSON object", source=source, field="resource_tags", partition=partition) from None
        out.append([(str(k), "" if v is None else str(v)) for k, v in doc.items()])
    return pa.chunked_array([pa.array(out, type=pa.map_(pa.string(), pa.string()))])


# ---------------------------------------------------------------- normalising


def _col(frame: pd.DataFrame, name: str, default: object = np.nan) -> pd.Series:
    return frame[name] if name in frame else pd.Series(default, index=frame.index, dtype=object if isinstance(default, str) else None)


def effective_costs(frame: pd.DataFrame, source: str, partition: str) -> tuple[pd.Series, pd.Series]:
    """(effective, billed) per line item: amortized and net where the export has net columns."""
    kind = frame["line_item_line_item_type"]
    unblended = frame["line_item_unblended_cost"]

    def pick(gross: str, net: str | None, rows: pd.Series) -> pd.Series:
        if not rows.any():
            return pd.Series(np.nan, index=frame.index)
        if gross not in frame:
            raise PoloInputError(
                f"{int(rows.sum())} {kind[rows].iloc[0]} line item(s) need column {gross}, which is missing",
                source=source,
                field=gross,
                partition=partition,
            )
        values = frame[gross]
        if net and net in frame:
            values = frame[net].where(frame[net].notna(), values)
        if values[rows].isna().any():
            raise PoloInputError(f"{kind[rows].iloc[0]} line item(s) with an empty amount", source=source, field=gross, partition=partition)
        return values

    net_unblended = frame["line_item_net_unblended_cost"] if "line_item_net_unblended_cost" in frame else None
    billed = unblended if net_unblended is None else net_unblended.where(net_unblended.notna(), unblended)
    effective = billed.copy()

    covered = kind == "SavingsPlanCoveredUsage"
    if covered.any():
        effective[covered] = pick("savings_plan_savings_plan_effective_cost", "savings_plan_net_savings_plan_effective_cost", covered)[covered]
    recurring = kind == "SavingsPlanRecurringFee"
    if recurring.any():
        total = pick("savings_plan_total_commitment_to_date", None, recurring)
        used = pick("savings_plan_used_commitment", None, recurring)
        effective[recurring] = (total - used)[recurring]
    effective[kind.isin(["SavingsPlanNegation", "SavingsPlanUpfrontFee"])] = 0.0
    discounted = kind == "DiscountedUsage"
    if discounted.any():
        effective[discounted] = pick("reservation_effective_cost", "reservation_net_effective_cost", discounted)[discounted]
    rifee = kind == "RIFee"
    if rifee.any():
        upfront = pick(
            "reservation_unused_amortized_upfront_fee_for_billing_period",
            "reservation_net_unused_amortized_upfront_fee_for_billing_period",
            rifee,
        )
        recurring_fee = pick("reservation_unused_recurring_fee", "reservation_net_unused_recurring_fee", rifee)
        effective[rifee] = (upfront + recurring_fee)[rifee]
    return effective, billed


def resource_arn(resource_id: str, product: str, region: str, account: str) -> str:
    if not resource_id:
        return f"aws:{account}/{product}/{region or 'global'}"
    if resource_id.startswith("arn:"):
        return resource_id
    if product == "AmazonS3":
        return f"arn:aws:s3:::{resource_id}"
    prefix = resource_id.split("-", 1)[0]
    if product == "AmazonEC2" and prefix in EC2_ID_TYPES and "-" in resource_id:
        return f"arn:aws:ec2:{region}:{account}:{EC2_ID_TYPES[prefix]}/{resource_id}"
    service = re.sub(r"^(amazon|aws)", "", product.lower()) or product.lower()
    return f"arn:aws:{service}:{region}:{account}:{resource_id}"


def split_arn(arn: str) -> tuple[str, str]:
    """(resource_type, resource_name) of a resource id."""
    if arn.startswith("aws:"):
        return "aws:service", arn.split("/", 2)[1]
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return "aws:unknown", arn
    service, rest = parts[2], parts[5]
    for sep in ("/", ":"):
        if sep in rest:
            kind, name = rest.split(sep, 1)
            return f"{service}:{kind}", name
    return service, rest


def normalize(
    batch: pd.DataFrame,
    tag_maps: pa.ChunkedArray | None,
    *,
    source: str,
    partition: str,
    fx_rates: Mapping[str, float] | None = None,
    extra_properties: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Line items of one file -> daily cost events (one per resource, day and charge category)."""
    if batch.empty:
        return empty_events()
    frame = batch.reset_index(drop=True)
    for name in ("line_item_unblended_cost",):
        bad = frame[name].isna()
        if bad.any():
            raise PoloInputError(f"{int(bad.sum())} line item(s) with a missing or non-numeric amount", source=source, field=name, partition=partition)

    kinds = frame["line_item_line_item_type"].fillna("")
    unknown = sorted(set(kinds) - set(CHARGE_CATEGORY))
    if unknown:
        raise PoloInputError(f"unknown line item type(s) {unknown}", source=source, field="line_item_line_item_type", partition=partition)

    rates = {"USD": 1.0, **{k.upper(): float(v) for k, v in (fx_rates or {}).items()}}
    currency = frame["line_item_currency_code"].fillna("USD").str.upper()
    missing_rate = sorted(set(currency) - set(rates))
    if missing_rate:
        raise PoloInputError(
            f"amounts in {missing_rate[0]} and no conversion rate to USD is configured",
            source=source,
            field="line_item_currency_code",
            partition=partition,
        )
    rate = currency.map(rates).astype("float64")

    effective, billed = effective_costs(frame, source, partition)
    listed = _col(frame, "pricing_public_on_demand_cost")
    listed = listed.where(listed.notna(), frame["line_item_unblended_cost"])

    region = _col(frame, "product_region_code", "")
    if "product_region" in frame:
        region = region.where(region.notna() & (region != ""), frame["product_region"])
    region = region.fillna("").astype(str)
    account = frame["line_item_usage_account_id"].fillna("").astype(str)
    product = frame["line_item_product_code"].fillna("").astype(str)
    resid = _col(frame, "line_item_resource_id", "").fillna("").astype(str)

    keys = pd.DataFrame({"rid": resid, "product": product, "region": region, "account": account})
    distinct = keys.drop_duplicates()
    distinct_arn = [resource_arn(*row) for row in distinct.itertuples(index=False, name=None)]
    arn_of = pd.Series(distinct_arn, index=pd.MultiIndex.from_frame(distinct))
    arn = pd.Series(arn_of.reindex(pd.MultiIndex.from_frame(keys)).to_numpy(), index=frame.index)

    work = pd.DataFrame(
        {
            "day": frame["usage_start"].dt.floor("D"),
            "resource_arn": arn,
            "charge_category": kinds.map(CHARGE_CATEGORY),
            "value": effective * rate,
            "billed_cost": billed * rate,
            "list_cost": listed * rate,
            "aws_account_id": account,
            "aws_region": region,
            "service": product,
            "usage_type": _col(frame, "line_item_usage_type", "").fillna(""),
            "instance_type": _col(frame, "product_instance_type", "").fillna(""),
            "line_item_type": kinds,
        }
    )
    grouped = work.groupby(["day", "resource_arn", "charge_category"], sort=False, observed=True)
    events = grouped.agg(
        value=("value", "sum"),
        billed_cost=("billed_cost", "sum"),
        list_cost=("list_cost", "sum"),
        line_items=("value", "size"),
        aws_account_id=("aws_account_id", "first"),
        aws_region=("aws_region", "first"),
        service=("service", "first"),
        usage_type=("usage_type", "first"),
        instance_type=("instance_type", "max"),
        line_item_type=("line_item_type", "first"),
    ).reset_index()
    first_rows = grouped.head(1).index.to_numpy()  # a representative line item per event, for tags

    tags = _tags_for(frame, tag_maps, first_rows)
    base = dict(extra_properties or {})
    properties = []
    for i, row in enumerate(events.itertuples(index=False)):
        props = dict(base)
        props["line_item_type"] = row.line_item_type
        props["line_items"] = str(row.line_items)
        if row.usage_type:
            props["usage_type"] = row.usage_type
        if row.instance_type:
            props["instance_type"] = row.instance_type
        for key, value in tags[i].items():
            props[f"tag:{key}"] = value
        properties.append(props)

    types_names = {arn: split_arn(arn) for arn in events["resource_arn"].unique()}
    created_by = [_creator(t) for t in tags]
    out = pd.DataFrame(
        {
            "resource_arn": events["resource_arn"],
            "resource_type": events["resource_arn"].map(lambda a: types_names[a][0]),
            "resource_name": events["resource_arn"].map(lambda a: types_names[a][1]),
            "event_time": events["day"],
            "event_type": "cost",
            "event_action": events["charge_category"].str.lower(),
            "value": events["value"],
            "billed_cost": events["billed_cost"],
            "list_cost": events["list_cost"],
            "charge_category": events["charge_category"],
            "service": events["service"],
            "provider": "AWS",
            "unit": "USD",
            "properties": properties,
            "actor_name": created_by,
            "collector": COLLECTOR,
            "aws_account_id": events["aws_account_id"],
            "aws_region": events["aws_region"],
        }
    )
    return conform(out)



def _tags_for(frame: pd.DataFrame, tag_maps: pa.ChunkedArray | None, rows: np.ndarray) -> list[dict[str, str]]:
    tags: list[dict[str, str]] = [{} for _ in rows]
    flat = [c for c in frame.columns if c.startswith("tag:")]
    if flat:
        sub = frame.loc[rows, flat]
        for i, values in enumerate(sub.itertuples(index=False, name=None)):
            for col, value in zip(flat, values):
                if isinstance(value, str) and value != "":
                    tags[i][col[4:]] = value
    if tag_maps is not None:
        picked = tag_maps.take(pa.array(rows)).to_pylist()
        for i, pairs in enumerate(picked):
            for key, value in (pairs or []):
                if value not in (None, ""):
                    tags[i][_strip_tag_prefix(key)] = value
    return tags


def _creator(tags: dict[str, str]) -> str:
    """``aws:createdBy`` is ``IAMUser:AIDA…:alice`` or ``AssumedRole:AROA…:alice@example.com``."""
    raw = tags.get("aws:createdBy") or tags.get("aws_created_by") or tags.get("aws_createdBy") or ""
    return raw.rsplit(":", 1)[-1]


# ---------------------------------------------------------------- one window


@dataclass
class CurWindow:
    events: pd.DataFrame
    sources: list[str]
    line_items: int


def collect(
    location: Location,
    export_name: str,
    start: dt.date,
    end_exclusive: dt.date,
    *,
    fx_rates: Mapping[str, float] | None = None,
    extra_properties: Mapping[str, str] | None = None,
) -> CurWindow:
    """All cost events of the export for the days [start, end_exclusive)."""
    partition = window_label(start, end_exclusive)
    frames, sources, line_items = [], [], 0
    for period in billing_periods(start, end_exclusive):
        manifest = read_manifest(location, export_name, period, partition)
        sources.append(f"{location.uri}/{manifest.path}")
        for relpath in manifest.files:
            source = f"{location.uri}/{relpath}"
            batch, tag_maps, _ = read_window(location, relpath, start, end_exclusive, partition)
            line_items += len(batch)
            frames.append(
                normalize(batch, tag_maps, source=source, partition=partition, fx_rates=fx_rates, extra_properties=extra_properties)
            )
            sources.append(source)
    events = pd.concat(frames, ignore_index=True) if frames else empty_events()
    return CurWindow(events=_merge_across_files(events), sources=sources, line_items=line_items)


def _merge_across_files(events: pd.DataFrame) -> pd.DataFrame:
    """A resource's day may be split over several data files: one event per key in the end."""
    key = ["resource_arn", "event_time", "charge_category"]
    if events.empty or not events.duplicated(key).any():
        return events
    sums = events.groupby(key, sort=False)[["value", "billed_cost", "list_cost"]].sum()
    firsts = events.drop_duplicates(key).set_index(key)
    firsts[["value", "billed_cost", "list_cost"]] = sums
    return conform(firsts.reset_index()[list(events.columns)])

