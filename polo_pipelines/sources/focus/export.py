"""FOCUS 1.0-1.3 billing exports (any provider) read into daily cost events (``cost_focus``).

A source is one file or a folder of files (``.csv``, ``.csv.gz``, ``.parquet``), local or S3.
Rows are attributed to the UTC day of ``ChargePeriodStart``; one event per provider,
resource, day and ``ChargeCategory``, with ``value`` = EffectiveCost, ``billed_cost`` =
BilledCost, ``list_cost`` = ListCost, and ``properties['rows']`` counting the source rows
it stands for, so every row of the export is accounted for.

Resource ids: ``ResourceId`` where present (Azure ARM ids lower-cased); rows without one go
to ``focus:{provider}/{sub account}/{service}``. Column names are matched case-insensitively,
and FOCUS 1.3's ServiceProviderName / HostProviderName stand in for ProviderName /
PublisherName. The literal ``NULL`` counts as an absent value, as in FOCUS sample data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.files import is_billing_file, json_object, numeric, read_table, text, utc_timestamps, window_mask
from polo_pipelines.sources.locations import Location, MissingFile
from polo_pipelines.store.events import CHARGE_CATEGORIES, build_properties, cost_events, empty_events, window_label

COLLECTOR = "cost_focus"

ALIASES = {
    "ProviderName": ("ProviderName", "ServiceProviderName"),
    "PublisherName": ("PublisherName", "HostProviderName"),
}
REQUIRED = ("BilledCost", "EffectiveCost", "ChargePeriodStart", "ChargeCategory", "BillingCurrency", "ProviderName")
TEXT = (
    "ChargeCategory",
    "ChargeClass",
    "BillingCurrency",
    "ProviderName",
    "PublisherName",
    "BillingAccountId",
    "SubAccountId",
    "SubAccountName",
    "ServiceName",
    "ServiceCategory",
    "RegionId",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "Tags",
)
AMOUNTS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")


@dataclass
class FocusWindow:
    events: pd.DataFrame
    sources: list[str]
    rows: int
    duplicate_files: list[str] = field(default_factory=list)  # files whose bytes an earlier file of the source gave


def list_files(location: Location) -> list[str]:
    """The billing files of a FOCUS source: the file itself, or every billing file below the folder."""
    if is_billing_file(location.uri) and location.exists(""):
        return [""]
    return [p for p in location.glob("**/*") if is_billing_file(p)]


def _canonical(table: pa.Table) -> pa.Table:
    by_lower = {}
    for canon, aliases in ALIASES.items():
        for alias in aliases:
            by_lower[alias.lower()] = canon
    for canon in (*REQUIRED, *TEXT, *AMOUNTS):
        by_lower.setdefault(canon.lower(), canon)
    names = [by_lower.get(c.strip().lower(), c) for c in table.column_names]
    return table.rename_columns(names)


def read_bytes(location: Location, relpath: str, partition: str) -> bytes:
    try:
        return location.read_bytes(relpath)
    except MissingFile as exc:
        source = f"{location.uri}/{relpath}" if relpath else location.uri
        raise PoloInputError(f"file is missing ({exc})", source=source, partition=partition) from None


def read_window(
    location: Location, relpath: str, start: dt.date, end_exclusive: dt.date, partition: str, raw: bytes | None = None
) -> pd.DataFrame:
    source = f"{location.uri}/{relpath}" if relpath else location.uri
    raw = read_bytes(location, relpath, partition) if raw is None else raw
    table = _canonical(read_table(raw, relpath or location.uri, source, partition, null_values=("", "NULL")))
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise PoloInputError(
            f"not a FOCUS export: required column {missing[0]} is missing (header has {', '.join(table.column_names[:8])}…)",
            source=source,
            field=missing[0],
            partition=partition,
        )
    starts = utc_timestamps(table.column("ChargePeriodStart"), source=source, field="ChargePeriodStart", partition=partition)
    if starts.null_count:
        raise PoloInputError(
            f"{starts.null_count} row(s) without a charge period start", source=source, field="ChargePeriodStart", partition=partition
        )
    mask = window_mask(starts, start, end_exclusive)
    table, starts = table.filter(mask), starts.filter(mask)
    frame = pd.DataFrame({"charge_start": starts.to_pandas()})
    for col in TEXT:
        frame[col] = text(table, col, source=source, partition=partition) if col in table.column_names else None
    for col in AMOUNTS:
        frame[col] = numeric(table.column(col)) if col in table.column_names else float("nan")
    frame["_row_hash"] = row_hashes(table, source, partition)
    frame["_source"] = source
    return frame


def row_hashes(table: pa.Table, source: str, partition: str) -> np.ndarray:
    """A 64-bit hash of each row over every column: two equal rows have equal hashes."""
    if not table.num_rows:
        return np.zeros(0, dtype=np.uint64)
    cells = pd.DataFrame({name: text(table, name, source=source, partition=partition) for name in table.column_names})
    return pd.util.hash_pandas_object(cells, index=False).to_numpy()


def refuse_duplicate_rows(frame: pd.DataFrame, partition: str) -> None:
    """FOCUS defines no row key and an export lists each charge once: a row repeated in every column is a file
    delivered twice over (or a broken export), and summing it would double the cost."""
    repeated = frame.duplicated("_row_hash", keep=False)
    if not repeated.any():
        return
    rows = frame[repeated]
    first = rows.iloc[0]
    files = sorted(set(rows.loc[rows["_row_hash"] == first["_row_hash"], "_source"]))
    where = f"in {files[0]}" if len(files) == 1 else f"in {' and '.join(files)}"
    raise PoloInputError(
        f"{int(frame.duplicated('_row_hash').sum())} row(s) repeat another row in every column, first the "
        f"{first['ChargeCategory']} row of {first['ResourceId'] or first['ServiceName']} at {first['charge_start']} {where}; "
        "remove the duplicated rows or file, or set POLO_FOCUS_ALLOW_DUPLICATE_ROWS=1 if this export repeats rows on purpose",
        source=str(first["_source"]),
        field="rows",
        partition=partition,
    )


def normalize(
    frame: pd.DataFrame,
    *,
    partition: str,
    fx_rates: Mapping[str, float] | None = None,
    extra_properties: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    if frame.empty:
        return empty_events()
    frame = frame.reset_index(drop=True)
    for col in ("BilledCost", "EffectiveCost"):
        bad = frame[col].isna()
        if bad.any():
            raise PoloInputError(
                f"{int(bad.sum())} row(s) with a missing or non-numeric amount",
                source=frame.loc[bad, "_source"].iloc[0],
                field=col,
                partition=partition,
            )
    category = frame["ChargeCategory"].fillna("").str.strip().str.capitalize()
    unknown = ~category.isin(CHARGE_CATEGORIES)
    if unknown.any():
        raise PoloInputError(
            f"unknown ChargeCategory {frame.loc[unknown, 'ChargeCategory'].iloc[0]!r}",
            source=frame.loc[unknown, "_source"].iloc[0],
            field="ChargeCategory",
            partition=partition,
        )
    rates = {"USD": 1.0, **{k.upper(): float(v) for k, v in (fx_rates or {}).items()}}
    currency = frame["BillingCurrency"].fillna("").str.upper()
    no_rate = ~currency.isin(rates)
    if no_rate.any():
        raise PoloInputError(
            f"amounts in {currency[no_rate].iloc[0] or '(empty)'} and no conversion rate to USD is configured",
            source=frame.loc[no_rate, "_source"].iloc[0],
            field="BillingCurrency",
            partition=partition,
        )
    rate = currency.map(rates).astype("float64")

    provider = frame["ProviderName"].fillna("unknown")
    account = frame["SubAccountId"].fillna(frame["BillingAccountId"]).fillna("")
    service = frame["ServiceName"].fillna("")
    rid = frame["ResourceId"].fillna("")
    azure = provider.str.lower().str.contains("microsoft|azure")
    rid = rid.where(~azure, rid.str.lower())
    fallback = "focus:" + provider + "/" + account + "/" + service
    arn = rid.where(rid != "", fallback)
    listed = frame["ListCost"].where(frame["ListCost"].notna(), frame["BilledCost"])

    work = pd.DataFrame(
        {
            "day": frame["charge_start"].dt.floor("D"),
            "provider": provider,
            "resource_arn": arn,
            "charge_category": category,
            "value": frame["EffectiveCost"] * rate,
            "billed_cost": frame["BilledCost"] * rate,
            "list_cost": listed * rate,
            "service": service,
            "account": account,
            "region": frame["RegionId"].fillna(""),
            "resource_type": frame["ResourceType"].fillna(""),
            "resource_name": frame["ResourceName"].fillna(""),
            "charge_class": frame["ChargeClass"].fillna(""),
        }
    )
    keys = ["day", "provider", "resource_arn", "charge_category"]
    grouped = work.groupby(keys, sort=False)
    events = grouped.agg(
        value=("value", "sum"),
        billed_cost=("billed_cost", "sum"),
        list_cost=("list_cost", "sum"),
        rows=("value", "size"),
        service=("service", "first"),
        account=("account", "first"),
        region=("region", "first"),
        resource_type=("resource_type", "max"),
        resource_name=("resource_name", "max"),
        corrections=("charge_class", lambda s: int((s.str.lower() == "correction").sum())),
    ).reset_index()
    firsts = grouped.head(1).index.to_numpy()
    tag_texts = frame.loc[firsts, "Tags"].tolist()
    sources = frame.loc[firsts, "_source"].tolist()

    tag_rows, tag_keys, tag_values = [], [], []
    for i, (tags, source) in enumerate(zip(tag_texts, sources)):
        for key, value in json_object(tags, source=source, field="Tags", partition=partition).items():
            tag_rows.append(i)
            tag_keys.append(f"tag:{key}")
            tag_values.append(value)
    properties = build_properties(
        len(events),
        constant=dict(extra_properties or {}),
        columns={
            "rows": events["rows"].astype(str),
            "provider": events["provider"],
            "sub_account_id": events["account"],
            "corrections": events["corrections"].astype(str).where(events["corrections"] > 0, ""),
        },
        pairs=(np.array(tag_rows, dtype=np.int64), pa.array(tag_keys, type=pa.string()), pa.array(tag_values, type=pa.string())),
    )

    is_aws = events["provider"].str.upper().isin(["AWS", "AMAZON WEB SERVICES"])
    return cost_events(
        resource_arn=events["resource_arn"],
        resource_type=events["resource_type"].where(events["resource_type"] != "", "focus:" + events["service"]),
        resource_name=events["resource_name"].where(events["resource_name"] != "", events["resource_arn"].str.rsplit("/", n=1).str[-1]),
        day=events["day"],
        charge_category=events["charge_category"],
        value=events["value"],
        billed_cost=events["billed_cost"],
        list_cost=events["list_cost"],
        service=events["service"],
        provider=events["provider"],
        properties=properties,
        collector=COLLECTOR,
        aws_account_id=events["account"].where(is_aws, ""),
        aws_region=events["region"].where(is_aws, ""),
    )


def collect(
    location: Location,
    start: dt.date,
    end_exclusive: dt.date,
    *,
    fx_rates: Mapping[str, float] | None = None,
    extra_properties: Mapping[str, str] | None = None,
    allow_duplicate_rows: bool = False,
) -> FocusWindow:
    """The window's events from every file of the source; a file whose bytes another file already gave is skipped
    (counted in ``duplicate_files``), and rows repeated in every column are refused unless ``allow_duplicate_rows``."""
    partition = window_label(start, end_exclusive)
    files = list_files(location)
    if not files:
        raise PoloInputError("no FOCUS files (.csv, .csv.gz, .parquet) found", source=location.uri, partition=partition)
    frames, seen, duplicates = [], set(), []
    for f in files:
        raw = read_bytes(location, f, partition)
        digest = hashlib.sha256(raw).digest()
        if digest in seen:
            duplicates.append(f"{location.uri}/{f}" if f else location.uri)
            continue
        seen.add(digest)
        frames.append(read_window(location, f, start, end_exclusive, partition, raw))
    frame = pd.concat(frames, ignore_index=True)
    if not allow_duplicate_rows:
        refuse_duplicate_rows(frame, partition)
    events = normalize(frame, partition=partition, fx_rates=fx_rates, extra_properties=extra_properties)
    sources = [f"{location.uri}/{f}" if f else location.uri for f in files]
    return FocusWindow(events=events, sources=sources, rows=len(frame), duplicate_files=duplicates)
