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
from collections.abc import Iterator, Mapping
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
    Placed,
    SeenHashes,
    TextCodes,
    WindowEvents,
    file_source,
    group_codes,
    is_billing_file,
    json_object,
    mix_in_place,
    nanoseconds,
    numeric,
    read_ahead,
    table_batches,
    text_codes,
    text_hashes,
    utc_timestamps,
)
from polo_pipelines.sources.locations import Location
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


@dataclass
class RowBatch:
    """One batch of a file's rows charged in the window: text columns as codes (``texts``; a column the file does
    not have reads as missing), amounts (NaN where empty), each row's start and its hash over every column."""

    start_ns: np.ndarray
    texts: dict[str, TextCodes]
    numbers: dict[str, np.ndarray]
    hashes: np.ndarray

    def __len__(self) -> int:
        return len(self.start_ns)

    def text(self, column: str) -> TextCodes:
        return self.texts.get(column) or TextCodes.constant(len(self))

    def number(self, column: str) -> np.ndarray:
        return self.numbers[column] if column in self.numbers else np.full(len(self), np.nan)


def rows_of(table: pa.Table, start: dt.date, end_exclusive: dt.date, source: str, partition: str) -> RowBatch:
    """One batch of a file's rows, those charged in [start, end), with the columns normalising reads."""
    table = _canonical(table)
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
    start_ns = nanoseconds(starts)
    lo, hi = (np.datetime64(day, "ns").astype(np.int64) for day in (start, end_exclusive))
    keep = (start_ns >= lo) & (start_ns < hi)
    if not keep.all():
        table, start_ns = table.filter(pa.array(keep)), start_ns[keep]
    texts = {col: text_codes(table.column(col), source=source, field=col, partition=partition) for col in TEXT if col in table.column_names}
    numbers = {col: numeric(table.column(col)).to_numpy(dtype="float64") for col in AMOUNTS if col in table.column_names}
    return RowBatch(start_ns, texts, numbers, row_hashes(table, source, partition))


def row_hashes(table: pa.Table, source: str, partition: str) -> np.ndarray:
    """A 64-bit hash of each row over every column: two equal rows have equal hashes.

    Numbers and times are hashed by value, text once per distinct value, never a Python object per cell. (A row of a
    CSV file and the same row in a Parquet file, amounts typed there, hash apart.)"""
    out = np.zeros(table.num_rows, dtype=np.uint64)
    scratch = np.empty(table.num_rows, dtype=np.uint64)
    for name in table.column_names:
        column = table.column(name)
        if (
            pa.types.is_floating(column.type)
            or pa.types.is_integer(column.type)
            or pa.types.is_temporal(column.type)
            or pa.types.is_boolean(column.type)
        ):
            hashes = mix_in_place(_bits(column).copy(), scratch)
        else:
            try:
                if not (pa.types.is_dictionary(column.type) and pa.types.is_string(column.type.value_type)):
                    column = column.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PoloInputError(f"column is not UTF-8 text ({exc})", source=source, field=name, partition=partition) from None
            hashes = text_hashes(column)
        if column.null_count:
            hashes[column.is_null().to_numpy(zero_copy_only=False)] = NULL_HASH
        np.multiply(out, _PRIME, out=out)  # each column's hashes are mixed already: one mix at the end
        np.bitwise_xor(out, hashes, out=out)
    return mix_in_place(out, scratch)


_PRIME = np.uint64(0x100000001B3)


def _bits(column: pa.ChunkedArray) -> np.ndarray:
    """A number's or a time's 64 bits (nulls as zero: the caller marks them)."""
    if pa.types.is_floating(column.type):
        return pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy().view(np.uint64)
    if pa.types.is_temporal(column.type):
        column = column.cast(pa.timestamp("ns", tz="UTC")) if pa.types.is_timestamp(column.type) else column
        column = pc.cast(column, pa.int64())
    return pc.fill_null(column.cast(pa.int64()), 0).to_numpy().view(np.uint64)


class RowHashes:
    """FOCUS defines no row key and an export lists each charge once: a row repeated in every column is a file
    delivered twice over (or a broken export), and summing it would double the cost. The window's rows seen so far
    are kept as 64-bit hashes with the file each came from (12 bytes a row)."""

    def __init__(self, partition: str):
        self.partition = partition
        self.files: list[str] = []
        self.seen = SeenHashes()

    def refuse_repeats(self, batch: RowBatch, source: str) -> None:
        if source not in self.files:
            self.files.append(source)
        found = self.seen.add_unless_repeated(batch.hashes, self.files.index(source))
        if found is not None:
            repeated, earlier = found  # earlier: the file of an earlier batch holding the same row
            row = int(np.flatnonzero(repeated)[0])
            at = np.array([row])
            category, resource, service = (batch.text(c).texts(at)[0] for c in ("ChargeCategory", "ResourceId", "ServiceName"))
            files = sorted({source, self.files[earlier[row]] if earlier[row] >= 0 else source})
            where = f"in {files[0]}" if len(files) == 1 else f"in {' and '.join(files)}"
            raise PoloInputError(
                f"{int(repeated.sum())} row(s) repeat another row in every column, first the "
                f"{category} row of {resource or service or '(no resource or service)'} "
                f"at {pd.Timestamp(batch.start_ns[row], tz='UTC')} {where}; "
                "remove the duplicated rows or file, or set POLO_FOCUS_ALLOW_DUPLICATE_ROWS=1 if this export repeats rows on purpose",
                source=files[0],
                field="rows",
                partition=self.partition,
            )


class LargestText:
    """Per event, the largest non-empty value (in text order) its rows give for one column, held as a number: the
    value's place among the distinct values seen so far (``texts``), -1 for none. A batch is compared by numbers, and
    as text only where an event's rows give two values or a value other than the one it holds."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._numbers = KeyNumbers(self._number)

    def _number(self, value: str) -> int:
        if not value:
            return -1
        self.texts.append(value)
        return len(self.texts) - 1

    def offer(self, held: np.ndarray, placed: Placed, codes: TextCodes) -> None:
        """``held``: every event's number, updated in place for the events of ``placed`` (one batch's rows)."""
        row_number = self._numbers.lookup([codes.strings()])[codes.codes]
        present = row_number >= 0
        if not present.any():
            return
        group, number = placed.group[present], row_number[present]
        n = len(placed.slot)
        low, high = np.full(n, np.iinfo(np.int64).max), np.full(n, -1)
        np.minimum.at(low, group, number)
        np.maximum.at(high, group, number)
        mixed = np.flatnonzero((high >= 0) & (low != high))
        if len(mixed):  # an event given two values in one batch: its largest as text
            rows = np.isin(group, mixed)
            candidates = np.unique(number[rows])
            by_text = candidates[np.argsort(np.array([self.texts[c] for c in candidates], dtype=object), kind="stable")]
            rank = np.empty(len(self.texts), dtype=np.int64)
            rank[by_text] = np.arange(len(by_text))
            best = np.full(n, -1)
            np.maximum.at(best, group[rows], rank[number[rows]])
            high[mixed] = by_text[best[mixed]]
        offered = np.flatnonzero(high >= 0)
        at, new = placed.slot[offered], high[offered]
        old = held[at]
        take = old < 0
        differ = np.flatnonzero(~take & (old != new))
        if len(differ):
            take[differ] = [self.texts[a] > self.texts[b] for a, b in zip(new[differ], old[differ])]
        held[at[take]] = new[take]

    def texts_of(self, held: np.ndarray) -> np.ndarray:
        """Each event's value, "" where it has none."""
        texts = np.array([*self.texts, ""], dtype=object)
        return texts[np.where(held < 0, len(self.texts), held)]


def _missing(value: str | None) -> bool:
    return value is None


def _category(raw: str | None) -> str:
    return (raw or "").strip().capitalize()


_CATEGORIES = tuple(CHARGE_CATEGORIES)


class FocusTotals:
    """A window's cost events built from its rows one batch at a time: one event per provider, resource, day and
    charge category, with its amounts summed, its rows and corrections counted, what its first row says (service,
    account, region, tags) and the largest resource type and name its rows give, as if every row were read at once.
    Memory holds the events and the batch, never the window's rows."""

    def __init__(self, start: dt.date, end_exclusive: dt.date, *, partition: str, fx_rates: Mapping[str, float] | None = None):
        self.day0 = np.datetime64(start, "D")
        self._day0 = int(self.day0.astype(np.int64))
        self.partition = partition
        self.rates = {"USD": 1.0, **{k.upper(): float(v) for k, v in (fx_rates or {}).items()}}
        self.rows = 0
        self._resources: dict[tuple[str, str], int] = {}
        self._combos = KeyNumbers(self._resource_of)  # (provider, resource id, account, service) -> its resource
        # sums: value, billed, list, rows, corrections; extras: the largest resource type and name any row gave
        days = (end_exclusive - start).days
        self._largest = {"resource_type": LargestText(), "resource_name": LargestText()}
        self._events = WindowEvents(5, days=days, categories=len(_CATEGORIES), partition=partition, extras=dict.fromkeys(self._largest, -1))

    def add(self, batch: RowBatch, source: str) -> None:
        """The rows of one batch of one file (``source``) added to the events."""
        if not len(batch):
            return
        partition = self.partition
        for col in ("BilledCost", "EffectiveCost"):
            bad = np.isnan(batch.number(col))
            if bad.any():
                raise PoloInputError(
                    f"{int(bad.sum())} row(s) with a missing or non-numeric amount", source=source, field=col, partition=partition
                )
        # Text columns: each distinct value read once.
        categories = batch.text("ChargeCategory")
        unknown = [raw or "" for raw in categories.used() if _category(raw) not in _CATEGORIES]
        if unknown:
            raise PoloInputError(f"unknown ChargeCategory {unknown[0]!r}", source=source, field="ChargeCategory", partition=partition)
        category_code = categories.per_value(
            lambda raw: _CATEGORIES.index(c) if (c := _category(raw)) in _CATEGORIES else -1, dtype=np.int64
        )
        currencies = batch.text("BillingCurrency")
        no_rate = [c for c in dict.fromkeys((raw or "").upper() for raw in currencies.used()) if c not in self.rates]
        if no_rate:
            raise PoloInputError(
                f"amounts in {no_rate[0] or '(empty)'} and no conversion rate to USD is configured",
                source=source,
                field="BillingCurrency",
                partition=partition,
            )
        rate = currencies.per_value(lambda raw: self.rates.get((raw or "").upper(), np.nan), dtype="float64")

        provider = batch.text("ProviderName")
        provider = provider.or_else(TextCodes.constant(len(batch), "unknown"), provider.per_value(_missing, dtype=bool))
        account = batch.text("SubAccountId")
        account = account.or_else(batch.text("BillingAccountId"), account.per_value(_missing, dtype=bool))
        service, rid = batch.text("ServiceName"), batch.text("ResourceId")
        names = (provider, rid, account, service)
        combo, combo_rows = group_codes([c.codes for c in names], [len(c.values) for c in names])
        resource = self._combos.lookup([c.texts(combo_rows) for c in names])[combo]
        day_code = batch.start_ns // NS_PER_DAY - self._day0  # the day in the window
        placed = self._events.place(resource, day_code * len(_CATEGORIES) + category_code, source)
        group, first_rows, slot, new = placed

        billed = batch.number("BilledCost")
        listed = batch.number("ListCost")
        listed = np.where(np.isnan(listed), billed, listed)
        corrections = batch.text("ChargeClass").per_value(lambda c: (c or "").lower() == "correction", dtype="float64")
        effective = batch.number("EffectiveCost")
        self._events.add(placed, effective * rate, billed * rate, listed * rate, np.ones(len(batch)), corrections)
        self.rows += len(batch)
        for name, column in (("resource_type", "ResourceType"), ("resource_name", "ResourceName")):
            self._largest[name].offer(self._events.extras[name], placed, batch.text(column))

        rows = first_rows[new]
        self._events.firsts.append(
            {
                "resource": resource[rows],
                "day": day_code[rows],
                "category": category_code[rows],
                "service": service.texts(rows),
                "account": account.texts(rows),
                "region": batch.text("RegionId").texts(rows),
                "tags": batch.text("Tags").values[batch.text("Tags").codes[rows]],
                "source": np.full(len(rows), source, dtype=object),
            }
        )

    def _resource_of(self, provider: str, resource_id: str, account: str, service: str) -> int:
        if resource_id and any(word in provider.lower() for word in ("microsoft", "azure")):
            resource_id = resource_id.lower()
        key = (provider, resource_id or f"focus:{provider}/{account}/{service}")
        return self._resources.setdefault(key, len(self._resources))

    def events(self, extra_properties: Mapping[str, str] | None = None) -> pd.DataFrame:
        """The events, in the order their first row was read."""
        if not len(self._events):
            return empty_events()
        first, sums = self._events.first_rows(), self._events.sums
        keys = list(self._resources)
        providers = pd.Series(np.array([p for p, _ in keys], dtype=object)[first["resource"]])
        arns = pd.Series(np.array([r for _, r in keys], dtype=object)[first["resource"]])
        service, account = pd.Series(first["service"]), pd.Series(first["account"])
        days = pd.Series(pd.to_datetime(self.day0 + first["day"]).tz_localize("UTC"))
        rows, corrections = sums[3].round().astype(np.int64), sums[4].round().astype(np.int64)

        tag_rows, tag_keys, tag_values = [np.zeros(0, dtype=np.int64)], [], []
        text_code, texts = pd.factorize(pd.Series(first["tags"], dtype=object))  # tags repeat: each text parsed once
        order = np.argsort(text_code, kind="stable")
        bounds = np.searchsorted(text_code[order], np.arange(len(texts) + 1))
        for code, tags in enumerate(texts):
            events_with = order[bounds[code] : bounds[code + 1]]
            parsed = json_object(tags, source=first["source"][events_with[0]], field="Tags", partition=self.partition)
            for key, value in parsed.items():
                tag_rows.append(events_with)
                tag_keys.extend([f"tag:{key}"] * len(events_with))
                tag_values.extend([value] * len(events_with))
        properties = build_properties(
            len(arns),
            constant=dict(extra_properties or {}),
            columns={
                "rows": pd.Series(rows).astype(str),
                "provider": providers,
                "sub_account_id": account,
                "corrections": pd.Series(corrections).astype(str).where(corrections > 0, ""),
            },
            pairs=(np.concatenate(tag_rows), pa.array(tag_keys, type=pa.string()), pa.array(tag_values, type=pa.string())),
        )
        resource_type, resource_name = (
            pd.Series(self._largest[n].texts_of(self._events.extras[n])) for n in ("resource_type", "resource_name")
        )
        last_part = np.array([r.rsplit("/", 1)[-1] for _, r in keys], dtype=object)[first["resource"]]  # once per resource
        is_aws = providers.str.upper().isin(["AWS", "AMAZON WEB SERVICES"])
        return cost_events(
            resource_arn=arns,
            resource_type=resource_type.where(resource_type != "", "focus:" + service),
            resource_name=resource_name.where(resource_name != "", pd.Series(last_part)),
            day=days,
            charge_category=pd.Series(np.asarray(_CATEGORIES, dtype=object)[first["category"]]),
            value=sums[0],
            billed_cost=sums[1],
            list_cost=sums[2],
            service=service,
            provider=providers,
            properties=properties,
            collector=COLLECTOR,
            aws_account_id=account.where(is_aws, ""),
            aws_region=pd.Series(first["region"]).where(is_aws, ""),
        )


def collect(
    location: Location,
    start: dt.date,
    end_exclusive: dt.date,
    *,
    fx_rates: Mapping[str, float] | None = None,
    extra_properties: Mapping[str, str] | None = None,
    allow_duplicate_rows: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> FocusWindow:
    """The window's events from every file of the source, read in batches of about ``batch_rows`` rows; a file whose
    bytes another file already gave is skipped (counted in ``duplicate_files``), and rows repeated in every column are
    refused unless ``allow_duplicate_rows``. Any error stops the window before anything is returned."""
    partition = window_label(start, end_exclusive)
    files = list_files(location)
    if not files:
        raise PoloInputError("no FOCUS files (.csv, .csv.gz, .parquet) found", source=location.uri, partition=partition)
    totals = FocusTotals(start, end_exclusive, partition=partition, fx_rates=fx_rates)
    hashes = RowHashes(partition)

    def read_file(path: Path, relpath: str, source: str) -> Iterator[pa.Table]:
        window = ("ChargePeriodStart", start, end_exclusive)
        return table_batches(
            path,
            relpath or location.uri,
            source,
            partition,
            null_values=("", "NULL"),
            time_window=window,
            batch_rows=batch_rows,
            dictionaries=True,
        )

    export = ExportFiles(location, files, partition, read_file)
    with read_ahead(export.batches()) as batches:
        for source, table in batches:
            batch = rows_of(table, start, end_exclusive, source, partition)
            if not allow_duplicate_rows:
                hashes.refuse_repeats(batch, source)
            totals.add(batch, source)
    events = totals.events(extra_properties)
    sources = [file_source(location, f) for f in files]
    return FocusWindow(events=events, sources=sources, rows=totals.rows, duplicate_files=export.duplicates)
