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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.files import (
    BATCH_ROWS,
    NS_PER_DAY,
    NULL_HASH,
    ExportFiles,
    KeyNumbers,
    SeenHashes,
    TextCodes,
    WindowEvents,
    group_codes,
    json_object,
    nanoseconds,
    numeric,
    read_ahead,
    table_batches,
    text_codes,
    text_hashes,
    utc_timestamps,
)
from polo_pipelines.sources.locations import Location
from polo_pipelines.store.events import build_properties, cost_events, empty_events, map_pairs, window_label

COLLECTOR = "cost_aws"

START = "line_item_usage_start_date"
END = "line_item_usage_end_date"
KIND = "line_item_line_item_type"
RESERVATION_ARN = "reservation_reservation_a_r_n"
SAVINGS_PLAN_ARN = "savings_plan_savings_plan_a_r_n"
# Legacy CSV headers (reservation/ReservationARN) snake-case without AWS's a_r_n.
ALIASES = {"reservation_reservation_arn": RESERVATION_ARN, "savings_plan_savings_plan_arn": SAVINGS_PLAN_ARN}
# Recurring commitment fees cover every hour of their interval: a monthly RIFee starts on the 1st and ends on
# the next 1st (and so does a Savings Plan fee in a daily or monthly export). The effective view spreads them
# over the days of that interval; the billed view keeps them on the day they were billed.
SPREAD_KINDS = ("RIFee", "SavingsPlanRecurringFee")
# A fee line item without a resource id belongs to the commitment its export names.
COMMITMENT_OF_KIND = {
    "RIFee": RESERVATION_ARN,
    "SavingsPlanRecurringFee": SAVINGS_PLAN_ARN,
    "SavingsPlanUpfrontFee": SAVINGS_PLAN_ARN,
}
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
    "identity_line_item_id",
    "identity_time_interval",
    RESERVATION_ARN,
    SAVINGS_PLAN_ARN,
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
            raise PoloInputError("manifest has no list of data files", source=f"{location.uri}/{path}", field=key, partition=partition)
        files = tuple(location.resolve(ref, export_name) for ref in refs)
        return Manifest(path=path, kind=kind, files=files)
    raise PoloInputError(
        f"no manifest for billing period {period} (looked for {', '.join(p for _, p in candidates)})",
        source=location.uri,
        field="manifest",
        partition=partition,
    )


_PERIOD_MANIFESTS = (
    re.compile(r"^metadata/BILLING_PERIOD=(\d{4})-(\d{2})/(?P<name>[^/]+)-Manifest\.json$"),  # CUR 2.0
    re.compile(r"^(\d{4})(\d{2})01-\d{8}/(?P<name>[^/]+)-Manifest\.json$"),  # legacy: the period's own manifest
)


def days_held(location: Location, export_name: str, today: dt.date) -> tuple[dt.date, dt.date] | None:
    """The first and last day of the billing periods the export has a manifest for (the current one up to
    yesterday), from the listing alone; None when it has none."""
    months = set()
    for pattern, listing in zip(
        _PERIOD_MANIFESTS, (location.glob("metadata/BILLING_PERIOD=*/*-Manifest.json"), location.glob("*/*-Manifest.json"))
    ):
        for relpath in listing:
            found = pattern.match(relpath)
            if found and found["name"] == export_name:
                months.add(dt.date(int(found[1]), int(found[2]), 1))
    if not months:
        return None
    last = (max(months) + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return min(months), min(last, today - dt.timedelta(days=1))


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


def category_key(column: str) -> str | None:
    """The cost category a legacy flat column carries, or None: ``costCategory/Team`` (CSV), ``cost_category_team``."""
    for prefix in ("costCategory/", "cost_category_"):
        if column.startswith(prefix) and len(column) > len(prefix):
            return column[len(prefix) :]
    return None


def canonical_columns(table: pa.Table) -> pa.Table:
    """Rename legacy CSV headers to snake_case, tag columns to ``tag:{key}`` and cost category columns to ``cc:{name}``."""
    names = []
    for col in table.column_names:
        key = tag_key(col)
        category = category_key(col)
        if key is not None and col != "resource_tags":
            names.append(f"tag:{key}")
        elif category is not None:
            names.append(f"cc:{category}")
        elif "/" in col:
            names.append(ALIASES.get(snake(col), snake(col)))
        else:
            names.append(ALIASES.get(col, col))
    return table.rename_columns(names)


@dataclass
class LineItemBatch:
    """One batch of a data file's line items in a window, as pieces: a line item whose interval crosses midnight is
    one piece per day of the window it covers (``spread_over_days``), any other line item is one piece.

    Per piece: its start, its text columns as integer codes (``texts``), its amounts (``numbers``, NaN where empty),
    its share of its line item, whether it is the piece on the day the line item starts (``own``) and the interval it
    was spread over. ``table`` holds the batch's line items (``rows``: each piece's line item) for the columns read
    only at an event's first line item (tags, cost categories)."""

    table: pa.Table
    rows: np.ndarray
    start_ns: np.ndarray
    texts: dict[str, TextCodes]
    numbers: dict[str, np.ndarray]
    share: np.ndarray | None = None
    own: np.ndarray | None = None
    spread: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def text(self, column: str) -> TextCodes:
        """A text column ("" on every piece when the export does not have it)."""
        return self.texts.get(column) or TextCodes.constant(len(self), "")


def line_items(table: pa.Table, start: dt.date, end_exclusive: dt.date, source: str, partition: str) -> LineItemBatch:
    """One batch of a data file's rows, as its line items in [start, end) (flat tag columns as ``tag:{key}``, flat cost
    category columns as ``cc:{name}``)."""
    table = canonical_columns(table)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise PoloInputError(f"required column {missing[0]} is missing", source=source, field=missing[0], partition=partition)

    starts = utc_timestamps(table.column(START), source=source, field=START, partition=partition)
    if starts.null_count:
        raise PoloInputError(
            f"{starts.null_count} line item(s) without a usage start date", source=source, field=START, partition=partition
        )
    start_ns = nanoseconds(starts)
    kinds = text_codes(table.column(KIND), source=source, field=KIND, partition=partition)
    keep, end_ns = _overlapping_fees(table, start_ns, kinds, start, end_exclusive, source, partition)
    if not keep.all():
        kept = np.flatnonzero(keep)
        table, start_ns, kinds = table.take(pa.array(kept)), start_ns[kept], kinds.take(kept)
        end_ns = None if end_ns is None else end_ns[kept]
    for column in ("resource_tags", "cost_category"):  # maps; CSV exports hold them as JSON text
        if column in table.column_names and not pa.types.is_map(table.column(column).type):
            parsed = _json_maps(table.column(column), source, partition, column)
            table = table.set_column(table.column_names.index(column), column, parsed)
    texts = {KIND: kinds}
    for col in STRING_COLUMNS:
        if col in table.column_names and col not in (KIND, "identity_line_item_id", "identity_time_interval"):  # ids: LineItemIds
            texts[col] = text_codes(table.column(col), source=source, field=col, partition=partition)
    if "product_instance_type" not in texts and "product" in table.column_names and pa.types.is_map(table.column("product").type):
        lookup = pc.map_lookup(table.column("product"), pa.scalar("instance_type", type=table.column("product").type.key_type), "first")
        texts["product_instance_type"] = text_codes(lookup, source=source, field="product", partition=partition)
    numbers = {col: numeric(table.column(col)).to_numpy(dtype="float64") for col in NUMERIC_COLUMNS if col in table.column_names}
    batch = LineItemBatch(table, np.arange(len(table)), start_ns, texts, numbers)
    if end_ns is not None:
        batch = spread_over_days(batch, end_ns, start, end_exclusive)
    return batch


def _overlapping_fees(
    table: pa.Table, start_ns: np.ndarray, kinds: TextCodes, start: dt.date, end_exclusive: dt.date, source: str, partition: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows to keep: those starting in [start, end), and recurring fees whose interval overlaps it although they
    started before; with each row's interval end (NaT where it is not spread) when any fee is spread."""
    lo, hi = (np.datetime64(day, "ns").astype(np.int64) for day in (start, end_exclusive))
    keep = (start_ns >= lo) & (start_ns < hi)
    if END not in table.column_names:
        return keep, None
    rows = np.flatnonzero(kinds.per_value(lambda kind: kind in SPREAD_KINDS, dtype=bool))
    if not len(rows):
        return keep, None
    ends = np.full(len(table), np.iinfo(np.int64).min, dtype=np.int64)
    fee_ends = utc_timestamps(table.column(END).take(pa.array(rows)), source=source, field=END, partition=partition)
    ends[rows] = nanoseconds(fee_ends)
    overlap = (start_ns[rows] < hi) & (ends[rows] > lo)
    keep[rows[overlap]] = True
    return keep, ends


def spread_over_days(batch: LineItemBatch, end_ns: np.ndarray, start: dt.date, end_exclusive: dt.date) -> LineItemBatch:
    """The batch with each line item whose interval (its start..``end_ns``) crosses midnight as one piece per day of
    the window it covers: ``share`` is the piece's fraction of the interval (the effective view's share of the fee),
    ``own`` marks the piece on the day the line item starts (the billed view keeps the whole amount there),
    ``spread`` names the interval. Pieces stay where their line item was."""
    begin, end = batch.start_ns.view("datetime64[ns]"), end_ns.view("datetime64[ns]")
    valid = ~np.isnat(end) & (end > begin)
    first_day = begin.astype("datetime64[D]")
    last_day = np.where(valid, end - np.timedelta64(1, "ns"), begin).astype("datetime64[D]")
    split = np.flatnonzero(valid & (last_day > first_day))
    if not len(split):
        return batch
    lo, hi = np.datetime64(start, "D"), np.datetime64(end_exclusive, "D")
    take, piece_start, share, own, spans = [], [], [], [], []
    for i in split:  # a few fee line items per commitment and month
        total = (end[i] - begin[i]).astype(np.float64)
        for day in np.arange(max(first_day[i], lo), min(last_day[i] + 1, hi), dtype="datetime64[D]"):
            day_start = max(day.astype("datetime64[ns]"), begin[i])
            day_end = min((day + 1).astype("datetime64[ns]"), end[i])
            take.append(i)
            piece_start.append(day_start)
            share.append((day_end - day_start).astype(np.float64) / total)
            own.append(bool(day == first_day[i]))
            spans.append(f"{first_day[i]}..{last_day[i]}")
    whole = np.setdiff1d(np.arange(len(batch)), split)
    rows = np.concatenate([whole, np.asarray(take, dtype=np.int64)])
    order = np.argsort(rows, kind="stable")  # pieces where their line item was
    rows = rows[order]
    starts = np.concatenate([begin[whole], np.asarray(piece_start, dtype="datetime64[ns]")])[order]
    return LineItemBatch(
        table=batch.table,
        rows=batch.rows[rows],
        start_ns=starts.astype(np.int64),
        texts={name: codes.take(rows) for name, codes in batch.texts.items()},
        numbers={name: values[rows] for name, values in batch.numbers.items()},
        share=np.concatenate([np.ones(len(whole)), np.asarray(share, dtype=np.float64)])[order],
        own=np.concatenate([np.ones(len(whole), dtype=bool), np.asarray(own, dtype=bool)])[order],
        spread=np.concatenate([np.full(len(whole), "", dtype=object), np.asarray(spans, dtype=object)])[order],
    )


class LineItemIds:
    """AWS: a line item id is unique within a file for its time interval; a repeat would be summed twice. The ids
    seen in a file's earlier batches are kept as 64-bit hashes of (id, interval)."""

    def __init__(self, source: str, partition: str):
        self.source, self.partition = source, partition
        self.seen = SeenHashes()

    def refuse_repeats(self, table: pa.Table) -> None:
        """``table``: a batch of the file's line items in the window (before any is spread over days)."""
        table = canonical_columns(table)
        if "identity_line_item_id" not in table.column_names:
            return
        ids = table.column("identity_line_item_id").cast(pa.string())
        named = pc.greater(pc.fill_null(pc.binary_length(ids), 0), 0)
        if not pc.any(named).as_py():
            return
        everyone = pc.all(named).as_py()
        ids = ids if everyone else ids.filter(named)
        hashes = text_hashes(ids)
        if "identity_time_interval" in table.column_names:  # read as a dictionary: each interval hashed once
            interval = table.column("identity_time_interval")
            interval = interval if everyone else interval.filter(named)
            hashes ^= np.where(interval.is_null().to_numpy(zero_copy_only=False), 0, text_hashes(interval) * NULL_HASH)
        else:
            interval = pa.chunked_array([pa.nulls(len(ids), pa.string())])
        found = self.seen.add_unless_repeated(hashes, 0)
        if found is not None:
            repeated = found[0]
            at = int(np.flatnonzero(repeated)[0])
            first_id, first_interval = ids[at].as_py(), interval[at].as_py() or ""
            raise PoloInputError(
                f"{int(repeated.sum())} line item(s) repeat an id already in the file, first {first_id!r} ({first_interval})",
                source=self.source,
                field="identity_line_item_id",
                partition=self.partition,
            )


_WANTED = {*REQUIRED, *STRING_COLUMNS, *NUMERIC_COLUMNS, END, *ALIASES, "resource_tags", "product", "cost_category"}


def _wanted(column: str) -> bool:
    return column in _WANTED or column.startswith(("resource_tags_", "cost_category_"))


def _coded(column: str) -> bool:
    """Text columns read as dictionaries: all but the line item ids, distinct on every row."""
    return column != "identity_line_item_id"


def _json_maps(array: pa.ChunkedArray | pa.Array, source: str, partition: str, field: str) -> pa.Array:
    """CSV exports carry map columns as JSON text: every distinct text parsed (and refused if it is not an object)."""
    codes = text_codes(array, source=source, field=field, partition=partition)
    maps = [list(json_object(t, source=source, field=field, partition=partition).items()) for t in codes.values]
    return pa.array(maps, type=pa.map_(pa.string(), pa.string())).take(pa.array(codes.codes))


# ---------------------------------------------------------------- normalising


def effective_costs(numbers: Mapping[str, np.ndarray], kind: np.ndarray, source: str, partition: str) -> tuple[np.ndarray, np.ndarray]:
    """(effective, billed) per line item (``kind``: each one's index in KIND_NAMES): amortized and net where the
    export has net columns."""

    def pick(gross: str, net: str | None, rows: np.ndarray) -> np.ndarray:
        named = KIND_NAMES[kind[rows][0]]
        if gross not in numbers:
            raise PoloInputError(
                f"{int(rows.sum())} {named} line item(s) need column {gross}, which is missing",
                source=source,
                field=gross,
                partition=partition,
            )
        values = numbers[gross]
        if net and net in numbers:
            values = np.where(np.isnan(numbers[net]), values, numbers[net])
        if (rows & np.isnan(values)).any():
            raise PoloInputError(f"{named} line item(s) with an empty amount", source=source, field=gross, partition=partition)
        return values

    unblended = numbers["line_item_unblended_cost"]
    net_unblended = numbers.get("line_item_net_unblended_cost")
    billed = unblended if net_unblended is None else np.where(np.isnan(net_unblended), unblended, net_unblended)
    effective = billed.copy()
    is_kind = {
        name: kind == KIND_NAMES.index(name) for name in ("SavingsPlanCoveredUsage", "SavingsPlanRecurringFee", "DiscountedUsage", "RIFee")
    }
    covered = is_kind["SavingsPlanCoveredUsage"]
    if covered.any():
        effective[covered] = pick("savings_plan_savings_plan_effective_cost", "savings_plan_net_savings_plan_effective_cost", covered)[
            covered
        ]
    recurring = is_kind["SavingsPlanRecurringFee"]
    if recurring.any():
        total = pick("savings_plan_total_commitment_to_date", None, recurring)
        used = pick("savings_plan_used_commitment", None, recurring)
        effective[recurring] = (total - used)[recurring]
    effective[np.isin(kind, [KIND_NAMES.index("SavingsPlanNegation"), KIND_NAMES.index("SavingsPlanUpfrontFee")])] = 0.0
    discounted = is_kind["DiscountedUsage"]
    if discounted.any():
        effective[discounted] = pick("reservation_effective_cost", "reservation_net_effective_cost", discounted)[discounted]
    rifee = is_kind["RIFee"]
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
    if arn.startswith("aws:"):  # a service-level line (no resource id): its name says its account, two never read alike
        account, product, region = (arn[4:].split("/", 2) + ["", ""])[:3]
        return "aws:service", f"{product} {region} (account {account})"
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return "aws:unknown", arn
    service, rest = parts[2], parts[5]
    for sep in ("/", ":"):
        if sep in rest:
            kind, name = rest.split(sep, 1)
            return f"{service}:{kind}", name
    return service, rest


def _empty(value: str | None) -> bool:
    return not value


def _currency(value: str | None) -> str:
    return "USD" if value is None else value.upper()


KIND_NAMES = tuple(CHARGE_CATEGORY)  # bit i of an event's line item types is KIND_NAMES[i]
CATEGORY_NAMES = tuple(dict.fromkeys(CHARGE_CATEGORY.values()))
_CATEGORY_OF_KIND = np.array([CATEGORY_NAMES.index(CHARGE_CATEGORY[k]) for k in KIND_NAMES], dtype=np.int64)


class EventTotals:
    """A window's cost events built from its line items one batch at a time.

    One event per (day, resource, charge category): the amounts summed, the line item types seen, and what its first
    line item says (account, region, service, usage type, tags), as if every line item were read at once. Memory
    holds the events and the batch, never the window's line items."""

    def __init__(self, start: dt.date, end_exclusive: dt.date, *, partition: str, fx_rates: Mapping[str, float] | None = None):
        self.day0 = np.datetime64(start, "D")
        self._day0 = int(self.day0.astype(np.int64))
        self.partition = partition
        self.rates = {"USD": 1.0, **{k.upper(): float(v) for k, v in (fx_rates or {}).items()}}
        self.line_items = 0
        self._arns: dict[str, int] = {}
        self._resources = KeyNumbers(self._arn_of)  # (resource id, product, region, account) -> the number of its ARN
        self._instance_types: dict[int, str] = {}  # per resource, the largest instance type any line item names
        # sums: value, billed, list, line items; kinds: a bit per line item type seen; spread: the fee interval
        days = (end_exclusive - start).days
        self._events = WindowEvents(4, days=days, categories=len(CATEGORY_NAMES), partition=partition, extras={"kinds": 0, "spread": ""})
        self._tags: list[tuple[np.ndarray, pa.Array, pa.Array]] = []

    def add(self, batch: LineItemBatch, source: str) -> None:
        """The line items of one batch of one file (``source``) added to the events."""
        if not len(batch):
            return
        partition = self.partition
        numbers = batch.numbers
        unblended = numbers["line_item_unblended_cost"]
        bad = np.isnan(unblended)
        if bad.any():
            raise PoloInputError(
                f"{int(bad.sum())} line item(s) with a missing or non-numeric amount",
                source=source,
                field="line_item_unblended_cost",
                partition=partition,
            )
        kinds = batch.text(KIND)
        unknown = sorted({v or "" for v in kinds.used()} - set(KIND_NAMES))
        if unknown:
            raise PoloInputError(f"unknown line item type(s) {unknown}", source=source, field=KIND, partition=partition)
        kind_code = kinds.per_value(lambda v: KIND_NAMES.index(v) if v in KIND_NAMES else -1, dtype=np.int64)
        currencies = batch.text("line_item_currency_code")
        missing_rate = [c for c in dict.fromkeys(_currency(v) for v in currencies.used()) if c not in self.rates]
        if missing_rate:
            raise PoloInputError(
                f"amounts in {missing_rate[0]} and no conversion rate to USD is configured",
                source=source,
                field="line_item_currency_code",
                partition=partition,
            )
        rate = currencies.per_value(lambda v: self.rates.get(_currency(v), np.nan), dtype="float64")

        effective, billed = effective_costs(numbers, kind_code, source, partition)
        listed = numbers.get("pricing_public_on_demand_cost")
        listed = unblended if listed is None else np.where(np.isnan(listed), unblended, listed)
        own = np.ones(len(batch), dtype=bool) if batch.own is None else batch.own  # pieces of a spread fee (spread_over_days)
        if batch.share is not None:
            effective = effective * batch.share
        billed = np.where(own, billed, 0.0)
        listed = np.where(own, listed, 0.0)

        region = batch.text("product_region_code")
        if "product_region" in batch.texts:
            region = region.or_else(batch.texts["product_region"], region.per_value(_empty, dtype=bool))
        account, product = batch.text("line_item_usage_account_id"), batch.text("line_item_product_code")
        resid = batch.text("line_item_resource_id")
        for kind, column in COMMITMENT_OF_KIND.items():
            if column in batch.texts and kind in KIND_NAMES:
                unnamed = resid.per_value(_empty, dtype=bool) & (kind_code == KIND_NAMES.index(kind))
                if unnamed.any():
                    resid = resid.or_else(batch.texts[column], unnamed)

        names = (resid, product, region, account)
        key_codes, key_rows = group_codes([c.codes for c in names], [len(c.values) for c in names])
        arn_code = self._resources.lookup([c.texts(key_rows) for c in names])[key_codes]
        day_code = batch.start_ns // NS_PER_DAY - self._day0  # the day in the window
        category = _CATEGORY_OF_KIND[kind_code]
        placed = self._events.place(
            arn_code, day_code * len(CATEGORY_NAMES) + category, source
        )  # this batch's events, in the order their first line item appears
        group, first_rows, slot, new = placed
        n = len(slot)
        self._events.add(placed, effective * rate, billed * rate, listed * rate, own.astype("float64"))
        self.line_items += int(own.sum())
        seen = np.zeros(n, dtype=np.int64)
        for kind in np.unique(kind_code):
            seen[np.bincount(group[kind_code == kind], minlength=n) > 0] |= 1 << int(kind)
        self._events.extras["kinds"][slot] |= seen
        if batch.spread is not None:
            spread = _first_per_group(group, batch.spread, n)
            held = self._events.extras["spread"]
            fill = (spread != "") & (held[slot] == "")
            held[slot[fill]] = spread[fill]

        instance_type = batch.text("product_instance_type")
        has_type = ~instance_type.per_value(_empty, dtype=bool)
        if has_type.any():
            width = len(instance_type.values)
            for pair in np.unique(arn_code[has_type] * width + instance_type.codes[has_type]):
                arn, value = int(pair // width), instance_type.values[pair % width]
                if value > self._instance_types.get(arn, ""):
                    self._instance_types[arn] = value

        rows = first_rows[new]  # the first line item of each event first seen in this batch
        self._events.firsts.append(
            {
                "arn": arn_code[rows],
                "day": day_code[rows],
                "category": category[rows],
                "account": account.texts(rows),
                "region": region.texts(rows),
                "service": product.texts(rows),
                "usage_type": batch.text("line_item_usage_type").texts(rows),
            }
        )
        tag_rows, tag_keys, tag_values = _tag_pairs(batch.table, batch.rows[rows])
        self._tags.append((slot[new][tag_rows], tag_keys, tag_values))

    def _arn_of(self, resource_id: str, product: str, region: str, account: str) -> int:
        return self._arns.setdefault(resource_arn(resource_id, product, region, account), len(self._arns))

    def events(self, extra_properties: Mapping[str, str] | None = None) -> pd.DataFrame:
        """The events, one per (day, resource, charge category), in the order their first line item was read."""
        if not len(self._events):
            return empty_events()
        first, sums = self._events.first_rows(), self._events.sums
        arns = np.array(list(self._arns), dtype=object)
        types = np.full(len(arns), "", dtype=object)
        types[list(self._instance_types)] = list(self._instance_types.values())
        masks, mask_code = np.unique(self._events.extras["kinds"], return_inverse=True)
        names = np.array([",".join(sorted(k for i, k in enumerate(KIND_NAMES) if m >> i & 1)) for m in masks], dtype=object)
        tag_rows = np.concatenate([t[0] for t in self._tags])
        tag_keys = pa.concat_arrays([t[1] for t in self._tags])
        tag_values = pa.concat_arrays([t[2] for t in self._tags])
        n = len(self._events)
        properties = build_properties(
            n,
            constant=dict(extra_properties or {}),
            columns={
                "line_item_type": names[mask_code],
                "line_items": pa.array(sums[3].round().astype(np.int64)).cast(pa.string()),
                "usage_type": first["usage_type"],
                "instance_type": types[first["arn"]],
                "spread_over": self._events.extras["spread"],
            },
            pairs=(tag_rows, tag_keys, tag_values),
        )
        split = [split_arn(a) for a in arns]
        return cost_events(
            resource_arn=arns[first["arn"]],
            resource_type=np.array([t for t, _ in split], dtype=object)[first["arn"]],
            resource_name=np.array([n for _, n in split], dtype=object)[first["arn"]],
            day=(self.day0 + first["day"]).astype("datetime64[ms]"),
            charge_category=np.asarray(CATEGORY_NAMES, dtype=object)[first["category"]],
            value=sums[0],
            billed_cost=sums[1],
            list_cost=sums[2],
            service=first["service"],
            provider="AWS",
            properties=properties,
            actor_name=_creators(n, tag_rows, tag_keys, tag_values),
            collector=COLLECTOR,
            aws_account_id=first["account"],
            aws_region=first["region"],
        )


CREATOR_TAGS = ("aws:createdBy", "aws_created_by", "aws_createdBy")


def _first_per_group(group: np.ndarray, values: np.ndarray, n_events: int) -> np.ndarray:
    """Each event's first non-empty value ("" where none)."""
    out = np.full(n_events, "", dtype=object)
    rows = np.flatnonzero(values != "")
    if len(rows):
        groups, first = np.unique(group[rows], return_index=True)
        out[groups] = values[rows[first]]
    return out


def _per_distinct(values: pa.Array, fn: Callable[[str], str]) -> pa.Array:
    """Apply ``fn`` once per distinct string (tag keys repeat on every line item)."""
    encoded = values.dictionary_encode()
    dictionary = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], type=pa.string())
    return dictionary.take(encoded.indices)


def _tag_pairs(table: pa.Table, rows: np.ndarray) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """(event index, property key, value) for the line items ``rows`` of ``table`` (each event's first): ``tag:<key>``
    for a tag (user_ prefixes stripped), ``cost_category:<name>`` for a cost category."""
    idx, keys, values = [np.zeros(0, dtype=np.int64)], [pa.array([], type=pa.string())], [pa.array([], type=pa.string())]
    taken = pa.array(rows)
    for col in (c for c in table.column_names if c.startswith(("tag:", "cc:"))):
        picked = np.array(table.column(col).take(taken).cast(pa.string()).to_pylist(), dtype=object)
        mask = np.array([isinstance(v, str) and v != "" for v in picked], dtype=bool)
        key = col if col.startswith("tag:") else "cost_category:" + col[3:]
        idx.append(np.nonzero(mask)[0])
        keys.append(pa.array(np.full(int(mask.sum()), key, dtype=object), type=pa.string()))
        values.append(pa.array(picked[mask], type=pa.string()))
    if "cost_category" in table.column_names and pa.types.is_map(table.column("cost_category").type):
        # CUR 2.0: one map of category -> value; each category's first value, in the order of the categories' names
        at, name, value = map_pairs(table.column("cost_category").take(taken))
        named = pc.fill_null(pc.not_equal(name.cast(pa.string()), ""), False).to_numpy(zero_copy_only=False)
        at, name, value = at[named], np.array(name.cast(pa.string()).to_pylist(), dtype=object)[named], value.filter(pa.array(named))
        pairs = pd.DataFrame({"at": at, "name": name, "n": np.arange(len(at))}).drop_duplicates(["at", "name"])
        pairs = pairs.sort_values(["name", "at"], kind="stable")
        idx.append(pairs["at"].to_numpy(dtype=np.int64))
        keys.append(pa.array(("cost_category:" + pairs["name"]).tolist(), type=pa.string()))
        values.append(value.take(pa.array(pairs["n"].to_numpy())).cast(pa.string()))
    if "resource_tags" in table.column_names and pa.types.is_map(table.column("resource_tags").type):
        rows_, k, v = map_pairs(table.column("resource_tags").take(taken))
        idx.append(rows_)
        keys.append(_per_distinct(k.cast(pa.string()), lambda key: "tag:" + (key[5:] if key.startswith(("user_", "user:")) else key)))
        values.append(v.cast(pa.string()))
    return np.concatenate(idx), pa.concat_arrays(keys), pa.concat_arrays(values)


def _creators(n: int, rows: np.ndarray, keys: pa.Array, values: pa.Array) -> np.ndarray:
    """``aws:createdBy`` is ``IAMUser:AIDA…:alice`` or ``AssumedRole:AROA…:alice@example.com``: keep the last part."""
    out = np.full(n, "", dtype=object)
    mask = pc.is_in(keys, value_set=pa.array([f"tag:{t}" for t in CREATOR_TAGS])).to_numpy(zero_copy_only=False)
    for row, value in zip(rows[mask], values.filter(pa.array(mask)).to_pylist()):
        out[row] = value.rsplit(":", 1)[-1]
    return out


# ---------------------------------------------------------------- one window


def file_batches(
    path: Path, relpath: str, source: str, partition: str, start: dt.date, end_exclusive: dt.date, batch_rows: int = BATCH_ROWS
) -> Iterator[pa.Table]:
    """One data file's rows that may fall in [start, end), in batches: the columns the reader uses, text columns as
    dictionaries (row groups and batches wholly outside the window skipped)."""
    return table_batches(
        path,
        relpath,
        source,
        partition,
        wanted=_wanted,
        time_window=(START, start, end_exclusive),
        span_end=END,
        batch_rows=batch_rows,
        dictionaries=_coded,
    )


@dataclass
class CurWindow:
    events: pd.DataFrame
    sources: list[str]
    line_items: int
    duplicate_files: list[str] = field(default_factory=list)  # listed twice, or the same bytes as an earlier file


def collect(
    location: Location,
    export_name: str,
    start: dt.date,
    end_exclusive: dt.date,
    *,
    fx_rates: Mapping[str, float] | None = None,
    extra_properties: Mapping[str, str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> CurWindow:
    """All cost events of the export for the days [start, end_exclusive): every file the billing periods' manifests
    list, read in batches of about ``batch_rows`` line items into one set of events. Any error stops the window
    before anything is returned."""
    partition = window_label(start, end_exclusive)
    manifests, files = [], []
    for period in billing_periods(start, end_exclusive):
        manifest = read_manifest(location, export_name, period, partition)
        manifests.append(f"{location.uri}/{manifest.path}")
        files.extend(manifest.files)
    totals = EventTotals(start, end_exclusive, partition=partition, fx_rates=fx_rates)

    def read_file(path: Path, relpath: str, source: str) -> Iterator[pa.Table]:
        return file_batches(path, relpath, source, partition, start, end_exclusive, batch_rows)

    export = ExportFiles(location, files, partition, read_file, missing="data file named by the manifest is missing")
    ids = None
    with read_ahead(export.batches()) as batches:
        for source, table in batches:
            if ids is None or ids.source != source:
                ids = LineItemIds(source, partition)  # ids are unique within a file
            batch = line_items(table, start, end_exclusive, source, partition)
            ids.refuse_repeats(batch.table)
            totals.add(batch, source)
    events = totals.events(extra_properties)
    return CurWindow(events=events, sources=manifests + export.read, line_items=totals.line_items, duplicate_files=export.duplicates)
