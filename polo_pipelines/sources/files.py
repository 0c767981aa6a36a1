"""Reading one billing file (Parquet, CSV, gzipped CSV) into an Arrow table, with clear errors."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from polo_pipelines.errors import PoloInputError

FORMATS = (".parquet", ".csv", ".csv.gz")


def is_billing_file(name: str) -> bool:
    return name.lower().endswith(FORMATS)


def read_table(
    raw: bytes,
    name: str,
    source: str,
    partition: str,
    null_values: tuple[str, ...] = ("",),
    wanted: Callable[[str], bool] | None = None,
    time_window: tuple[str, object, object] | None = None,
    span_end: str | None = None,
) -> pa.Table:
    """CSV columns are all read as text (ids keep their leading zeros); callers cast amounts.

    For Parquet, ``wanted`` picks the columns to read and ``time_window`` = (column, start, end)
    skips row groups outside [start, end) when that column holds timestamps. With ``span_end`` (the
    column where each row's interval ends), rows whose interval overlaps the window are kept too,
    although they start before it (a monthly fee read for one of its days).
    """
    lower = name.lower()
    try:
        if lower.endswith(".parquet"):
            reader = pq.ParquetFile(pa.BufferReader(raw))
            schema = reader.schema_arrow
            columns = [n for n in schema.names if wanted(n)] if wanted else None
            filters = None
            if time_window and time_window[0] in schema.names and pa.types.is_timestamp(schema.field(time_window[0]).type):
                col, lo, hi = time_window
                tz = schema.field(col).type.tz
                lo, hi = pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC")
                if tz is None:
                    lo, hi = lo.tz_localize(None), hi.tz_localize(None)
                filters = [[(col, ">=", lo), (col, "<", hi)]]
                if span_end and span_end in schema.names and schema.field(span_end).type == schema.field(col).type:
                    filters.append([(col, "<", lo), (span_end, ">", lo)])
            return pq.read_table(pa.BufferReader(raw), columns=columns, filters=filters)
        if lower.endswith((".csv", ".csv.gz")):
            if lower.endswith(".gz"):
                raw = gzip.decompress(raw)
            header = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig").readline()
            names = list(pd.read_csv(io.StringIO(header), nrows=0).columns)
            return pacsv.read_csv(
                pa.BufferReader(raw),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    null_values=list(null_values),
                    strings_can_be_null=True,
                ),
            )
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PoloInputError(f"cannot read file: {exc}", source=source, field="file", partition=partition) from None
    raise PoloInputError(f"unknown file format (expected one of {', '.join(FORMATS)})", source=source, field="file", partition=partition)


# Billing timestamps outside these years are broken data (an unset date read as 1601 or 9999), and beyond
# pandas' nanosecond range besides.
PLAUSIBLE_YEARS = (1990, 2200)


def utc_timestamps(array: pa.ChunkedArray, *, source: str, field: str, partition: str) -> pa.ChunkedArray:
    """A timestamp column in UTC, whether stored as timestamps or ISO text; naive values are UTC.

    A timestamp outside the plausible years is refused, naming the field."""
    if pa.types.is_timestamp(array.type):
        if array.type.tz is None:
            array = pc.assume_timezone(array, "UTC")
        _refuse_implausible(array, source=source, field=field, partition=partition)
        return array
    try:
        parsed = pd.to_datetime(array.to_pandas(), utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError, pa.ArrowInvalid) as exc:  # OutOfBoundsDatetime is a ValueError
        raise PoloInputError(f"unparseable timestamp: {exc}", source=source, field=field, partition=partition) from None
    out = pa.chunked_array([pa.array(parsed, type=pa.timestamp("ns", tz="UTC"))])
    _refuse_implausible(out, source=source, field=field, partition=partition)
    return out


def _refuse_implausible(array: pa.ChunkedArray, *, source: str, field: str, partition: str) -> None:
    if not len(array) or array.null_count == len(array):
        return
    years = pc.year(array)
    lo, hi = PLAUSIBLE_YEARS
    bad = pc.or_(pc.less(years, lo), pc.greater_equal(years, hi))
    count = pc.sum(pc.cast(pc.fill_null(bad, False), pa.int64())).as_py() or 0
    if count:
        first = pc.filter(array, pc.fill_null(bad, False))[0]
        raise PoloInputError(
            f"{count} timestamp(s) outside the years {lo}..{hi - 1}, first {first.value} {array.type.unit} since 1970 "
            f"(year {pc.filter(years, pc.fill_null(bad, False))[0].as_py()})",
            source=source,
            field=field,
            partition=partition,
        )


def text(table: pa.Table, column: str, *, source: str, partition: str) -> pd.Series:
    """A column as text; bytes that are not UTF-8 are refused naming the column."""
    try:
        return table.column(column).cast(pa.string()).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PoloInputError(f"column is not UTF-8 text ({exc})", source=source, field=column, partition=partition) from None


def numeric(array: pa.ChunkedArray) -> pd.Series:
    """Amounts as float64; text that is not a number becomes NaN (callers refuse NaN)."""
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type) or pa.types.is_decimal(array.type):
        return array.cast(pa.float64()).to_pandas()
    return pd.to_numeric(array.cast(pa.string()).to_pandas(), errors="coerce")


def window_mask(starts: pa.ChunkedArray, start, end_exclusive) -> pa.ChunkedArray:
    lo = pa.scalar(pd.Timestamp(start, tz="UTC"), type=starts.type)
    hi = pa.scalar(pd.Timestamp(end_exclusive, tz="UTC"), type=starts.type)
    return pc.and_(pc.greater_equal(starts, lo), pc.less(starts, hi))


def json_object(text: object, *, source: str, field: str, partition: str) -> dict[str, str]:
    """A JSON object of strings held in a text cell (FOCUS Tags, CSV CUR map columns); empty cells are {}."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise PoloInputError(f"{field} is not a JSON object", source=source, field=field, partition=partition)
    return {str(k): "" if v is None else str(v) for k, v in doc.items()}
