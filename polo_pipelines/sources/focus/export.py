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
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.files import (
    BATCH_ROWS,
    NULL_HASH,
    SeenHashes,
    WindowEvents,
    group_codes,
    is_billing_file,
    json_object,
    local_file,
    mix,
    numeric,
    table_batches,
    text,
    text_hashes,
    utc_timestamps,
    window_mask,
)
from polo_pipelines.sources.locations import Location, file_digest
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


def rows_of(table: pa.Table, start: dt.date, end_exclusive: dt.date, source: str, partition: str) -> pd.DataFrame:
    """One batch of a file's rows, those charged in [start, end), as a frame of the columns normalising reads."""
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
    mask = window_mask(starts, start, end_exclusive)
    table, starts = table.filter(mask), starts.filter(mask)
    frame = pd.DataFrame({"charge_start": starts.to_pandas()})
    for col in TEXT:
        frame[col] = text(table, col, source=source, partition=partition) if col in table.column_names else None
    for col in AMOUNTS:
        frame[col] = numeric(table.column(col)) if col in table.column_names else float("nan")
    frame["_row_hash"] = row_hashes(table, source, partition)
    return frame


def row_hashes(table: pa.Table, source: str, partition: str) -> np.ndarray:
    """A 64-bit hash of each row over every column: two equal rows have equal hashes.

    Numbers and times are hashed by value, text once per distinct value, never a Python object per cell. (A row of a
    CSV file and the same row in a Parquet file, amounts typed there, hash apart.)"""
    out = np.zeros(table.num_rows, dtype=np.uint64)
    for name in table.column_names:
        column = table.column(name)
        if (
            pa.types.is_floating(column.type)
            or pa.types.is_integer(column.type)
            or pa.types.is_temporal(column.type)
            or pa.types.is_boolean(column.type)
        ):
            hashes = mix(_bits(column))
        else:
            try:
                column = column.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PoloInputError(f"column is not UTF-8 text ({exc})", source=source, field=name, partition=partition) from None
            hashes = text_hashes(column)
        hashes[column.is_null().to_numpy(zero_copy_only=False)] = NULL_HASH
        out = mix(out * _PRIME ^ hashes)
    return out


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

    def refuse_repeats(self, frame: pd.DataFrame, source: str) -> None:
        if source not in self.files:
            self.files.append(source)
        hashes = frame["_row_hash"].to_numpy(dtype=np.uint64)
        earlier = self.seen.find(hashes)  # the file of an earlier batch holding the same row
        repeated = pd.Series(hashes).duplicated(keep="first").to_numpy(copy=True) | (earlier >= 0)
        if repeated.any():
            row = int(np.flatnonzero(repeated)[0])
            first = frame.iloc[row]
            files = sorted({source, self.files[earlier[row]] if earlier[row] >= 0 else source})
            where = f"in {files[0]}" if len(files) == 1 else f"in {' and '.join(files)}"
            raise PoloInputError(
                f"{int(repeated.sum())} row(s) repeat another row in every column, first the "
                f"{first['ChargeCategory']} row of {_named(first['ResourceId']) or _named(first['ServiceName']) or '(no resource or service)'} "
                f"at {first['charge_start']} {where}; "
                "remove the duplicated rows or file, or set POLO_FOCUS_ALLOW_DUPLICATE_ROWS=1 if this export repeats rows on purpose",
                source=files[0],
                field="rows",
                partition=self.partition,
            )
        self.seen.add(hashes, self.files.index(source))


def _named(value: object) -> str:
    return value if isinstance(value, str) else ""


_CATEGORIES = tuple(CHARGE_CATEGORIES)


class FocusTotals:
    """A window's cost events built from its rows one batch at a time: one event per provider, resource, day and
    charge category, with its amounts summed, its rows and corrections counted, what its first row says (service,
    account, region, tags) and the largest resource type and name its rows give, as if every row were read at once.
    Memory holds the events and the batch, never the window's rows."""

    def __init__(self, start: dt.date, end_exclusive: dt.date, *, partition: str, fx_rates: Mapping[str, float] | None = None):
        self.day0 = np.datetime64(start, "D")
        self.partition = partition
        self.rates = {"USD": 1.0, **{k.upper(): float(v) for k, v in (fx_rates or {}).items()}}
        self.rows = 0
        self._resources: dict[tuple[str, str], int] = {}
        # sums: value, billed, list, rows, corrections; extras: the largest resource type and name any row gave
        days = (end_exclusive - start).days
        self._events = WindowEvents(
            5, days=days, categories=len(_CATEGORIES), partition=partition, extras={"resource_type": "", "resource_name": ""}
        )

    def add(self, frame: pd.DataFrame, source: str) -> None:
        """The rows of one batch of one file (``source``) added to the events."""
        if frame.empty:
            return
        frame = frame.reset_index(drop=True)
        partition = self.partition
        for col in ("BilledCost", "EffectiveCost"):
            bad = frame[col].isna()
            if bad.any():
                raise PoloInputError(
                    f"{int(bad.sum())} row(s) with a missing or non-numeric amount", source=source, field=col, partition=partition
                )
        # Text columns of few values: each distinct value read once.
        category_code, raw_categories = pd.factorize(frame["ChargeCategory"].fillna(""))
        category_names = [str(c).strip().capitalize() for c in raw_categories]
        unknown = [raw for raw, c in zip(raw_categories, category_names) if c not in _CATEGORIES]
        if unknown:
            raise PoloInputError(f"unknown ChargeCategory {unknown[0]!r}", source=source, field="ChargeCategory", partition=partition)
        category_code = np.array([_CATEGORIES.index(c) for c in category_names], dtype=np.int64)[category_code]
        currency_code, raw_currencies = pd.factorize(frame["BillingCurrency"].fillna(""))
        currencies = [str(c).upper() for c in raw_currencies]
        no_rate = [c for c in currencies if c not in self.rates]
        if no_rate:
            raise PoloInputError(
                f"amounts in {no_rate[0] or '(empty)'} and no conversion rate to USD is configured",
                source=source,
                field="BillingCurrency",
                partition=partition,
            )
        rate = np.array([self.rates[c] for c in currencies], dtype="float64")[currency_code]

        provider = frame["ProviderName"].fillna("unknown")
        account = frame["SubAccountId"].fillna(frame["BillingAccountId"]).fillna("")
        service = frame["ServiceName"].fillna("")
        rid = frame["ResourceId"].fillna("")
        combo, combo_rows = group_codes([provider, rid, account, service])
        names = []
        for p, r, a, sv in zip(*(c.iloc[combo_rows].astype(str).tolist() for c in (provider, rid, account, service))):
            if r and any(word in p.lower() for word in ("microsoft", "azure")):
                r = r.lower()
            names.append(self._resources.setdefault((p, r or f"focus:{p}/{a}/{sv}"), len(self._resources)))
        resource = np.asarray(names, dtype=np.int64)[combo]
        day = frame["charge_start"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[D]")
        day_code = (day - self.day0).astype(np.int64)  # the day in the window
        placed = self._events.place(resource, day_code * len(_CATEGORIES) + category_code, source)
        group, first_rows, slot, new = placed

        billed = frame["BilledCost"].to_numpy(dtype="float64")
        listed = frame["ListCost"].where(frame["ListCost"].notna(), frame["BilledCost"]).to_numpy(dtype="float64")
        class_code, classes = pd.factorize(frame["ChargeClass"].fillna(""))
        corrections = (
            np.array([str(c).lower() == "correction" for c in classes], dtype="float64")[class_code]
            if len(classes)
            else np.zeros(len(frame))
        )
        effective = frame["EffectiveCost"].to_numpy(dtype="float64")
        self._events.add(placed, effective * rate, billed * rate, listed * rate, np.ones(len(frame)), corrections)
        self.rows += len(frame)
        for name, column in (("resource_type", "ResourceType"), ("resource_name", "ResourceName")):
            codes, texts = pd.factorize(frame[column].fillna(""), sort=True)  # codes in the texts' order: max of codes
            present = codes > 0 if len(texts) and texts[0] == "" else codes >= 0
            if present.any():
                largest = pd.Series(codes[present]).groupby(group[present]).max()
                at = slot[largest.index.to_numpy()]
                held, offered = self._events.extras[name][at], np.asarray(texts, dtype=object)[largest.to_numpy()]
                self._events.extras[name][at] = np.where(offered > held, offered, held)

        rows = first_rows[new]
        self._events.firsts.append(
            {
                "resource": resource[rows],
                "day": day_code[rows],
                "category": category_code[rows],
                "service": service.iloc[rows].astype(str).to_numpy(dtype=object),
                "account": account.iloc[rows].astype(str).to_numpy(dtype=object),
                "region": frame["RegionId"].iloc[rows].fillna("").astype(str).to_numpy(dtype=object),
                "tags": frame["Tags"].iloc[rows].to_numpy(dtype=object),
                "source": np.full(len(rows), source, dtype=object),
            }
        )

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
        resource_type, resource_name = pd.Series(self._events.extras["resource_type"]), pd.Series(self._events.extras["resource_name"])
        is_aws = providers.str.upper().isin(["AWS", "AMAZON WEB SERVICES"])
        return cost_events(
            resource_arn=arns,
            resource_type=resource_type.where(resource_type != "", "focus:" + service),
            resource_name=resource_name.where(resource_name != "", arns.str.rsplit("/", n=1).str[-1]),
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
    seen, duplicates = set(), []
    for f in files:
        source = f"{location.uri}/{f}" if f else location.uri
        with local_file(location, f, partition) as path:
            digest = file_digest(path)
            if digest in seen:
                duplicates.append(source)
                continue
            seen.add(digest)
            window = ("ChargePeriodStart", start, end_exclusive)
            for table in table_batches(
                path, f or location.uri, source, partition, null_values=("", "NULL"), time_window=window, batch_rows=batch_rows
            ):
                frame = rows_of(table, start, end_exclusive, source, partition)
                if not allow_duplicate_rows:
                    hashes.refuse_repeats(frame, source)
                totals.add(frame, source)
    events = totals.events(extra_properties)
    sources = [f"{location.uri}/{f}" if f else location.uri for f in files]
    return FocusWindow(events=events, sources=sources, rows=totals.rows, duplicate_files=duplicates)
