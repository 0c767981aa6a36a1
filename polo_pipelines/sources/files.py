"""Billing files (Parquet, CSV, gzipped CSV) read in batches into Arrow tables, with clear errors; and what the export
readers build from them alike: a window's events (``WindowEvents``) and the rows seen (``SeenHashes``)."""

from __future__ import annotations

import contextlib
import csv
import errno
import gzip
import io
import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.locations import Location, MissingFile, file_digest

FORMATS = (".parquet", ".csv", ".csv.gz")
T = TypeVar("T")


def is_billing_file(name: str) -> bool:
    return name.lower().endswith(FORMATS)


# Line items read and normalised at a time: a month of any size is read in batches of about this many rows, so memory
# holds a batch and the events, never the month.
BATCH_ROWS = 250_000
# An event held until its window is written costs about this much: its sums, its first line item's fields and tags,
# and the copies the write makes (measured: 310K events of a CUR month add about 600 MiB at their peak).
BYTES_PER_EVENT = 2048


def max_events() -> int:
    """How many events one window may hold: POLO_MAX_EVENTS, else what half the memory available now holds."""
    raw = os.environ.get("POLO_MAX_EVENTS", "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise PoloInputError(f"must be a positive whole number, got {raw!r}", source="settings", field="POLO_MAX_EVENTS")
        return int(raw)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2 // BYTES_PER_EVENT
    except (OSError, ValueError):
        pass
    return 1 << 62


def refuse_too_many_events(count: int, limit: int, *, source: str, partition: str) -> None:
    """A window whose events would not fit in memory stops with a message, never with the kernel's out-of-memory kill."""
    if count > limit:
        raise PoloInputError(
            f"the window holds more than {limit:,} events (resource x day x charge category), more than fit in the memory "
            f"available (about {BYTES_PER_EVENT:,} bytes each): collect it a few days at a time (a backfill of single days) "
            "or set POLO_MAX_EVENTS on a machine with more memory",
            source=source,
            field="events",
            partition=partition,
        )


@contextlib.contextmanager
def local_file(location: Location, relpath: str, partition: str, missing: str = "file is missing") -> Iterator[Path]:
    """A billing file on local disk (an S3 object downloaded in parts, removed after); a missing file or a full disk
    stops the partition naming the file."""
    source = file_source(location, relpath)
    try:
        with location.local_copy(relpath) as path:
            yield path
    except MissingFile as exc:
        raise PoloInputError(f"{missing} ({exc})", source=source, partition=partition) from None
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise PoloInputError(f"the file does not fit on disk: {exc.strerror}", source=source, field="file", partition=partition) from None


def file_source(location: Location, relpath: str) -> str:
    """How errors and loads name a file of a location (the location itself when it is one file)."""
    return f"{location.uri}/{relpath}" if relpath else location.uri


class ExportFiles:
    """An export window's files read one after another as batches: ``batches()`` yields (source, table) and is meant
    for the reading thread (``read_ahead``), so that the next file is fetched (an S3 object downloaded) and hashed
    while the previous file's last batches are normalised. A file listed twice, or holding the same bytes as an earlier
    one, is skipped and named in ``duplicates``; ``read`` names the files read, in order (a file with no batch in the
    window too). ``read_file(path, relpath, source)`` gives a file's batches."""

    def __init__(
        self,
        location: Location,
        relpaths: Iterable[str],
        partition: str,
        read_file: Callable[[Path, str, str], Iterator[pa.Table]],
        *,
        missing: str = "file is missing",
    ):
        self.location, self.relpaths, self.partition = location, list(relpaths), partition
        self.read_file, self.missing = read_file, missing
        self.read: list[str] = []
        self.duplicates: list[str] = []

    def batches(self) -> Iterator[tuple[str, pa.Table]]:
        seen: set = set()
        for relpath in self.relpaths:
            source = file_source(self.location, relpath)
            if relpath in seen:  # listed twice: the same line items
                self.duplicates.append(source)
                continue
            with local_file(self.location, relpath, self.partition, missing=self.missing) as path:
                digest = file_digest(path)
                if digest in seen:  # the same bytes under another name
                    self.duplicates.append(source)
                    continue
                seen.update((relpath, digest))
                for table in self.read_file(path, relpath, source):
                    yield source, table
            self.read.append(source)


class TextCodes(NamedTuple):
    """A text column as one integer per row (``codes``) and the distinct values they stand for (``values``: str, or
    None for a missing value; a value may stand twice): what a reader groups and compares by, touching each distinct
    string once instead of once per row."""

    codes: np.ndarray
    values: np.ndarray

    @classmethod
    def constant(cls, n: int, value: str | None = None) -> TextCodes:
        return cls(np.zeros(n, dtype=np.int64), np.array([value], dtype=object))

    def take(self, rows: np.ndarray) -> TextCodes:
        return TextCodes(self.codes[rows], self.values)

    def strings(self) -> np.ndarray:
        """The distinct values as str, "" for a missing one."""
        strings = np.array(self.values, dtype=object)
        strings[pd.isna(strings)] = ""
        return strings

    def texts(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The values of ``rows`` (all rows when None) as str, "" for a missing one."""
        return self.strings()[self.codes if rows is None else self.codes[rows]]

    def per_value(self, fn: Callable[[str | None], object], dtype: object = object) -> np.ndarray:
        """``fn`` of each row's value, computed once per distinct value."""
        return np.array([fn(v) for v in self.values], dtype=dtype)[self.codes]

    def used(self) -> list[str | None]:
        """The distinct values some row holds."""
        return [self.values[c] for c in np.flatnonzero(np.bincount(self.codes, minlength=len(self.values)))]

    def or_else(self, other: TextCodes, use_other: np.ndarray) -> TextCodes:
        """This column's values, the other's where ``use_other``."""
        codes = np.where(use_other, other.codes + len(self.values), self.codes)
        return TextCodes(codes, np.concatenate([self.values, other.values]))


def text_codes(array: pa.ChunkedArray | pa.Array, *, source: str, field: str, partition: str) -> TextCodes:
    """A column as ``TextCodes``: Parquet read with dictionaries gives them as they are, other text is encoded here;
    bytes that are not UTF-8 are refused naming the column."""
    array = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(_as_text(array, source=source, field=field, partition=partition))
    array = array.unify_dictionaries()  # row groups come with dictionaries of their own: one for the batch
    if not array.num_chunks:
        return TextCodes(np.zeros(0, dtype=np.int64), np.array([None], dtype=object))
    words = _as_text(array.chunk(0).dictionary, source=source, field=field, partition=partition).to_numpy(zero_copy_only=False)
    codes = [chunk.indices.fill_null(len(words)).to_numpy(zero_copy_only=False).astype(np.int64) for chunk in array.chunks]
    values = [words.astype(object), np.array([None], dtype=object)]
    return TextCodes(np.concatenate(codes), np.concatenate(values))


def _as_text(array: pa.Array, *, source: str, field: str, partition: str) -> pa.Array:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    try:
        return array.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PoloInputError(f"column is not UTF-8 text ({exc})", source=source, field=field, partition=partition) from None


NS_PER_DAY = 86_400 * 10**9


def nanoseconds(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since 1970 (a missing one as NaT's integer)."""
    values = pc.cast(pc.cast(array, pa.timestamp("ns", tz="UTC")), pa.int64())
    return pc.fill_null(values, np.iinfo(np.int64).min).to_numpy()


class KeyNumbers:
    """Rows' keys of several text columns (a resource id, an account, ...) mapped to the number ``number(*key)`` gives,
    looked up a batch at a time: ``number`` runs once per key ever seen, the rest is one hash lookup of the batch."""

    def __init__(self, number: Callable[..., int]):
        self.number = number
        self._keys, self._numbers = pd.Index([], dtype=object), np.zeros(0, dtype=np.int64)

    def lookup(self, columns: list[np.ndarray]) -> np.ndarray:
        """Each row's number (``columns``: one str array per part of the key)."""
        joined = columns[0]
        for column in columns[1:]:
            joined = joined + "\x1f" + column
        at = self._keys.get_indexer(joined)
        new = np.flatnonzero(at < 0)
        if len(new):
            keys, first = np.unique(joined[new], return_index=True)
            numbers = [self.number(*key) for key in zip(*(c[new[first]].tolist() for c in columns))]
            self._keys = self._keys.append(pd.Index(keys, dtype=object))
            self._numbers = np.concatenate([self._numbers, np.array(numbers, dtype=np.int64)])
            at = self._keys.get_indexer(joined)
        return self._numbers[at]


NULL_HASH = np.uint64(0x9E3779B97F4A7C15)  # what a missing value hashes to


_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: every bit of the input moves every bit of the output (``x`` is left as it is)."""
    x = np.array(x, dtype=np.uint64)
    return mix_in_place(x, np.empty_like(x))


def text_hashes(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A 64-bit hash of each value of a text column (NULL_HASH for a missing one), each distinct text hashed once."""
    array = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
    out = [np.zeros(0, dtype=np.uint64)]
    if pa.types.is_dictionary(array.type) and array.num_chunks:
        # Row groups come with dictionaries of their own, mostly of the same texts: one for the column, hashed once.
        array = array.unify_dictionaries()
        values = np.append(_distinct_hashes(array.chunk(0).dictionary.cast(pa.large_string())), NULL_HASH)
        out.extend(values[chunk.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)] for chunk in array.chunks)
        return np.concatenate(out)
    for chunk in array.chunks:  # by their bytes, row by row (ids are mostly distinct: encoding them first would cost more)
        hashes = _distinct_hashes(chunk.cast(pa.large_string()))
        if chunk.null_count:
            hashes[chunk.is_null().to_numpy(zero_copy_only=False)] = NULL_HASH
        out.append(hashes)
    return np.concatenate(out)


def _distinct_hashes(texts: pa.LargeStringArray) -> np.ndarray:
    """Hashes of texts by their bytes, 8 at a time (longer texts by pandas' hash): a text's hash depends on the text
    alone, whatever else the chunk holds (a missing one hashes like "": callers mark them)."""
    n = len(texts)
    if not n:
        return np.zeros(0, dtype=np.uint64)
    texts = pc.fill_null(texts, "")
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + n + 1]
    lengths = np.diff(offsets)
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8) if texts.buffers()[2] is not None else np.zeros(0, np.uint8)
    shortest, longest = int(lengths.min()), int(lengths.max())
    hashes = mix(lengths.astype(np.uint64) ^ NULL_HASH)
    if 8 <= shortest and longest <= _LONG_TEXT:  # every text read by words, none aside
        return _word_hashes(data, offsets[:-1], lengths, hashes)
    long = lengths > _LONG_TEXT
    if long.any():
        hashes[long] = pd.util.hash_array(np.asarray(texts.filter(pa.array(long)).to_pylist(), dtype=object))
    short = np.flatnonzero((lengths > 0) & (lengths < 8))
    if len(short):  # one word, its bytes gathered and zero-padded
        counts = lengths[short]
        row = np.repeat(np.arange(len(short)), counts)
        col = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        padded = np.zeros((len(short), 8), dtype=np.uint8)
        padded[row, col] = data[np.repeat(offsets[short], counts) + col]
        hashes[short] = mix(hashes[short] ^ padded.view(np.uint64)[:, 0])
    rows = np.flatnonzero((lengths >= 8) & ~long)
    if len(rows):
        hashes[rows] = _word_hashes(data, offsets[rows], lengths[rows], hashes[rows])
    return hashes


def _word_hashes(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """``hashes`` mixed with each text's 8-byte little-endian words in turn, the last one zero-padded: texts of at least
    8 bytes, read where they lie in ``data`` (a last partial word is the text's last 8 bytes shifted down, so nothing
    is copied and nothing past a text is read)."""
    width = int(lengths[0])
    fixed = bool((lengths == width).all() and starts[-1] - starts[0] == width * (len(starts) - 1))  # one length, back to back
    window = None if fixed else np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # a word at every byte
    words = -(-lengths // 8)
    scratch = np.empty(len(starts), dtype=np.uint64)
    for j in range(int(words.max())):
        if fixed:
            at = min(8 * j, width - 8)
            word = np.ndarray((len(starts),), dtype="<u8", buffer=data, offset=int(starts[0]) + at, strides=(width,))
            if at < 8 * j:
                word = word >> np.uint64(64 - 8 * (width - 8 * j))
            _mix_into(hashes, word, scratch)
            continue
        active = np.flatnonzero(words > j)
        length, start = lengths[active], starts[active]
        whole = length >= 8 * j + 8
        word = window[np.where(whole, start + 8 * j, start + length - 8)]
        word >>= np.where(whole, 0, 64 - 8 * (length - 8 * j)).astype(np.uint64)
        mixed = hashes[active]
        _mix_into(mixed, word, scratch[: len(active)])
        hashes[active] = mixed
    return hashes


def _mix_into(hashes: np.ndarray, word: np.ndarray, scratch: np.ndarray) -> None:
    """``hashes`` = mix(``hashes`` ^ ``word``), in place."""
    np.bitwise_xor(hashes, word, out=hashes)
    mix_in_place(hashes, scratch)


def mix_in_place(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """``x`` = mix(``x``) with no temporaries (a batch's arrays are large); ``scratch``: a uint64 array as long."""
    for shift, factor in ((30, _MIX_1), (27, _MIX_2), (31, None)):
        np.right_shift(x, np.uint64(shift), out=scratch)
        np.bitwise_xor(x, scratch, out=x)
        if factor is not None:
            np.multiply(x, factor, out=x)
    return x


_LONG_TEXT = 256


def group_codes(columns: list, sizes: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Group codes of rows over several columns (by hashing, in first-appearance order) and each group's first row:
    what a batch's line items or rows are summed by. ``sizes``: the columns are integer codes below these, so the
    rows can be keyed by one integer when it fits."""
    if sizes is not None and np.prod([float(max(s, 1)) for s in sizes]) < 2.0**62:
        combined = np.zeros(len(columns[0]), dtype=np.int64)
        for column, size in zip(columns, sizes):
            combined = combined * max(size, 1) + column
        columns = [combined]
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    n_groups = 1
    for n, column in enumerate(columns):
        if n == 0:
            codes, groups = pd.factorize(column)
        else:
            column_codes, uniques = pd.factorize(column)
            # Re-factorizing after each column keeps the combined key below n_rows * cardinality: no overflow.
            codes, groups = pd.factorize(codes * (len(uniques) + 1) + column_codes)
        n_groups = len(groups)
    first = np.empty(n_groups, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write for each code is its first row
    return codes, first


class Placed(NamedTuple):
    """A batch's rows placed among a window's events: each row's group in the batch, each group's first row, its
    event (slot) in the window, and whether that event is new with this batch."""

    group: np.ndarray
    first_rows: np.ndarray
    slot: np.ndarray
    new: np.ndarray


class WindowEvents:
    """An export window's events as batches of rows add to them (the CUR and FOCUS readers): each event is a
    (resource, day, category), numbered in the order first seen, with its summed amounts (``sums`` rows), per-event
    columns the reader keeps up to date (``extras``: name -> the value a new event starts with) and what each event's
    first row said (``firsts``: a dict of columns per batch, for the events new in it). Holding more events than
    memory allows is refused (``max_events``).

    Events are found by a table of resources x (days x categories) when a resource's row of it costs less than an
    event does (a window of up to about three months), else by hashing."""

    def __init__(self, sums: int, *, days: int, categories: int, partition: str, extras: dict[str, int | str] | None = None):
        self.partition, self.limit = partition, max_events()
        self.width = max(days, 1) * categories  # cells per resource
        self._table = np.full((0, self.width), -1, dtype=np.int32) if self.width * 4 <= BYTES_PER_EVENT else None
        self._index = pd.Index(np.zeros(0, dtype=np.int64))
        self._count = 0
        self._sums = np.zeros((sums, 0))
        self._starts = dict(extras or {})
        self._extras = {name: np.zeros(0, dtype=object if isinstance(v, str) else np.int64) for name, v in self._starts.items()}
        self.firsts: list[dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return self._count

    def place(self, resource: np.ndarray, cell: np.ndarray, source: str) -> Placed:
        """Each row of a batch placed (``resource``: its resource's number; ``cell``: day in the window x categories +
        category), new events numbered after the others in the order their first row comes."""
        if len(cell) and (cell.min() < 0 or cell.max() >= self.width):
            raise ValueError(f"an event outside the window's {self.width} cells")
        before = self._count
        slots = (
            self._table_slots(resource, cell, source)
            if self._table is not None
            else self._hashed_slots(resource * self.width + cell, source)
        )
        counts = np.bincount(slots, minlength=self._count)
        slot = np.flatnonzero(counts)  # the events this batch touches; new ones last, in the order first seen
        local = np.zeros(self._count, dtype=np.int64)
        local[slot] = np.arange(len(slot))
        group = local[slots]
        first_rows = np.empty(len(slot), dtype=np.int64)
        first_rows[group[::-1]] = np.arange(len(group) - 1, -1, -1)  # the last write for each group is its first row
        return Placed(group, first_rows, slot, slot >= before)

    def _table_slots(self, resource: np.ndarray, cell: np.ndarray, source: str) -> np.ndarray:
        needed = int(resource.max()) + 1 if len(resource) else 0
        if needed > len(self._table):
            grown = np.full((max(needed, 2 * len(self._table)), self.width), -1, dtype=np.int32)
            grown[: len(self._table)] = self._table
            self._table = grown
        slots = self._table[resource, cell].astype(np.int64)
        fresh = np.flatnonzero(slots < 0)
        if len(fresh):
            codes, first = group_codes([resource[fresh] * self.width + cell[fresh]])
            numbered = self._grow(len(first), source)
            self._table[resource[fresh][first], cell[fresh][first]] = numbered
            slots[fresh] = numbered[codes]
        return slots

    def _hashed_slots(self, keys: np.ndarray, source: str) -> np.ndarray:
        codes, first = group_codes([keys])
        slot = self._index.get_indexer(keys[first])
        new = slot < 0
        if new.any():
            slot[new] = self._grow(int(new.sum()), source)
            self._index = self._index.append(pd.Index(keys[first][new]))
        return slot[codes]

    def _grow(self, added: int, source: str) -> np.ndarray:
        """Numbers for ``added`` new events, their sums and extras started (held in arrays that double as they fill)."""
        refuse_too_many_events(self._count + added, self.limit, source=source, partition=self.partition)
        numbered = self._count + np.arange(added)
        self._count += added
        if self._count > self._sums.shape[1]:
            size = max(self._count, 2 * self._sums.shape[1])
            self._sums = np.concatenate([self._sums, np.zeros((len(self._sums), size - self._sums.shape[1]))], axis=1)
            for name, start in self._starts.items():
                held = self._extras[name]
                self._extras[name] = np.concatenate([held, np.full(size - len(held), start, dtype=held.dtype)])
        return numbered

    @property
    def sums(self) -> np.ndarray:
        """The summed amounts: one row per amount, one column per event."""
        return self._sums[:, : self._count]

    @property
    def extras(self) -> dict[str, np.ndarray]:
        return {name: values[: self._count] for name, values in self._extras.items()}

    def add(self, placed: Placed, *amounts: np.ndarray) -> None:
        """Each row's amounts (one array per row of ``sums``) added to its event."""
        for row, values in enumerate(amounts):
            self.sums[row, placed.slot] += np.bincount(placed.group, weights=values, minlength=len(placed.slot))

    def first_rows(self) -> dict[str, np.ndarray]:
        """What each event's first row said, in the events' order."""
        return {name: np.concatenate([f[name] for f in self.firsts]) for name in self.firsts[0]}


class SeenHashes:
    """64-bit hashes of the rows seen so far, each with a tag (the file it came from), to find a row seen before.

    Kept as sorted runs, four runs of one size merged into one (each hash is moved about log4 of the batches times),
    behind a 32 MiB bitmap of the hashes' top 28 bits: a row whose bit is clear (nearly every row, up to tens of millions) is
    new without a search. 12 bytes a row besides the bitmap."""

    _BITS = 28

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.levels: list[int] = []  # how many merges made each run
        self.bitmap = np.zeros(1 << (self._BITS - 6), dtype=np.uint64)

    def _places(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = hashes >> np.uint64(64 - self._BITS)
        return (top >> np.uint64(6)).astype(np.int64), np.uint64(1) << (top & np.uint64(63))

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """The tag of the first equal hash added for each of ``hashes``, -1 where there is none."""
        found = np.full(len(hashes), -1, dtype=np.int64)
        if not self.runs:
            return found
        maybe = np.flatnonzero(self._maybe(*self._places(hashes)))
        for keys, tags in reversed(self.runs):  # newest first, so that the oldest tag is the one kept
            at, hit = _search(keys, hashes[maybe])
            found[maybe[hit]] = tags[at[hit]]
        return found

    def _maybe(self, words: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Whether each hash may have been added (its bit is set): the few that may are searched for."""
        return (self.bitmap[words] & masks) != 0

    def add_unless_repeated(self, hashes: np.ndarray, tag: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A batch's ``hashes`` added with ``tag``, unless one was added before or comes twice in the batch: then
        nothing is added, and what comes back is which rows repeat one before them, and each row's earlier tag (as
        ``find``). One sort of the batch serves both the check and the adding: a batch with no repeats (every batch
        of a sound export) is neither searched row by row nor counted in a hash table."""
        keys = np.sort(hashes)
        words, masks = self._places(keys)
        repeated = bool((keys[1:] == keys[:-1]).any())
        if not repeated and self.runs:
            maybe = keys[self._maybe(words, masks)]
            repeated = any(_search(run, maybe)[1].any() for run, _ in self.runs)
        if repeated:
            earlier = self.find(hashes)
            return pd.Series(hashes).duplicated(keep="first").to_numpy(copy=True) | (earlier >= 0), earlier
        self._add_sorted(keys, words, masks, tag)
        return None

    def add(self, hashes: np.ndarray, tag: int) -> None:
        keys = np.sort(hashes)
        self._add_sorted(keys, *self._places(keys), tag)

    def _add_sorted(self, keys: np.ndarray, words: np.ndarray, masks: np.ndarray, tag: int) -> None:
        if not len(keys):
            return
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])  # the keys are sorted, so are their words
        self.bitmap[words[starts]] |= np.bitwise_or.reduceat(masks, starts)
        self.runs.append((keys, np.full(len(keys), tag, dtype=np.int32)))
        self.levels.append(0)
        while len(self.levels) >= self._FAN_IN and len(set(self.levels[-self._FAN_IN :])) == 1:
            merged = self.runs[-self._FAN_IN :]
            keys, tags = np.concatenate([k for k, _ in merged]), np.concatenate([t for _, t in merged])
            if (tags == tags[0]).all():  # one tag: the keys alone in order
                keys.sort(kind="stable")
            else:
                order = np.argsort(keys, kind="stable")  # sorted runs, an earlier one's key first among equal keys
                keys, tags = keys[order], tags[order]
            level = self.levels[-1] + 1
            del self.runs[-self._FAN_IN :], self.levels[-self._FAN_IN :]
            self.runs.append((keys, tags))
            self.levels.append(level)

    _FAN_IN = 4


def _search(keys: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``hashes`` is or would be in the sorted ``keys``, and whether it is there."""
    at = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
    return at, keys[at] == hashes


@contextlib.contextmanager
def read_ahead(items: Iterator[T]) -> Iterator[Iterator[T]]:
    """``items`` made by a thread of their own one item ahead of the loop that uses them: decoding the next batch of a
    file (which releases the GIL) overlaps normalising this one, on a second core. Memory holds one batch more. An
    error while making an item is raised where the loop asks for it; leaving the block stops the thread."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def make() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # raised again in the loop that asked for the item
            put((done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def taken() -> Iterator[T]:
        while True:
            item, exc = handoff.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item

    thread = threading.Thread(target=make, name="polo-read-ahead", daemon=True)
    thread.start()
    try:
        yield taken()
    finally:
        stop.set()
        thread.join()


_READ_ERRORS = (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError)


def table_batches(
    path: Path,
    name: str,
    source: str,
    partition: str,
    *,
    null_values: tuple[str, ...] = ("",),
    wanted: Callable[[str], bool] | None = None,
    time_window: tuple[str, object, object] | None = None,
    span_end: str | None = None,
    batch_rows: int = BATCH_ROWS,
    dictionaries: bool | Callable[[str], bool] = False,
) -> Iterator[pa.Table]:
    """A billing file on disk as tables of about ``batch_rows`` rows each. CSV columns are all read as text (ids keep
    their leading zeros; callers cast amounts); for Parquet, ``wanted`` picks the columns to read, and with
    ``dictionaries`` its text columns (those it names, when a function) come as dictionary arrays (for ``text_codes``:
    decoded once per distinct value; a column of ids, distinct on every row, reads faster without).

    Parquet is read by row groups (groups whose statistics put every row outside the window are skipped); CSV in
    blocks. A row group or a block that cannot be read stops the file with its place named."""
    lower = name.lower()
    if lower.endswith(".parquet"):
        yield from _parquet_batches(path, source, partition, wanted, time_window, span_end, batch_rows, dictionaries)
    elif lower.endswith((".csv", ".csv.gz")):
        yield from _csv_batches(path, lower.endswith(".gz"), source, partition, null_values, batch_rows)
    else:
        raise PoloInputError(
            f"unknown file format (expected one of {', '.join(FORMATS)})", source=source, field="file", partition=partition
        )


def _parquet_batches(path, source, partition, wanted, time_window, span_end, batch_rows, dictionaries) -> Iterator[pa.Table]:
    try:
        schema = pq.read_schema(path)
        columns = [n for n in schema.names if wanted(n)] if wanted else None
        coded = dictionaries if callable(dictionaries) else (lambda name: bool(dictionaries))
        texts = [f.name for f in schema if (columns is None or f.name in columns) and _is_text(f.type) and coded(f.name)]
        reader = pq.ParquetFile(path, read_dictionary=texts or None)
    except _READ_ERRORS as exc:
        raise PoloInputError(f"cannot read file: {exc}", source=source, field="file", partition=partition) from None
    groups = [g for g in range(reader.num_row_groups) if _may_hold(reader, g, schema, time_window, span_end)]
    pending: list[int] = []
    rows = 0
    for n, group in enumerate(groups):
        pending.append(group)
        rows += reader.metadata.row_group(group).num_rows
        if rows < batch_rows and n < len(groups) - 1:
            continue
        try:
            yield reader.read_row_groups(pending, columns=columns)
        except _READ_ERRORS as exc:
            where = f"row group {pending[0]}" if len(pending) == 1 else f"row groups {pending[0]}..{pending[-1]}"
            bad = _first_unreadable(reader, pending, columns)
            if bad is not None:
                where = f"row group {bad}"
            raise PoloInputError(
                f"cannot read {where} of {reader.num_row_groups}: {exc}", source=source, field="file", partition=partition
            ) from None
        pending, rows = [], 0


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)


def _first_unreadable(reader: pq.ParquetFile, groups: list[int], columns) -> int | None:
    for group in groups:
        try:
            reader.read_row_group(group, columns=columns)
        except _READ_ERRORS:
            return group
    return None


def _may_hold(reader: pq.ParquetFile, group: int, schema: pa.Schema, time_window, span_end) -> bool:
    """False when the row group's statistics show no row starting in the window (nor, with ``span_end``, overlapping it)."""
    if not time_window or time_window[0] not in schema.names or not pa.types.is_timestamp(schema.field(time_window[0]).type):
        return True
    col, lo, hi = time_window
    lo, hi = pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC")
    starts = _bounds(reader, group, schema, col)
    if starts is None:
        return True
    first, last = starts
    if first.year < PLAUSIBLE_YEARS[0] or last.year >= PLAUSIBLE_YEARS[1]:
        return True  # read, so that the broken timestamps are refused
    if first >= hi:
        return False
    if last >= lo:
        return True
    if not span_end or span_end not in schema.names:
        return False
    ends = _bounds(reader, group, schema, span_end)
    return ends is None or ends[1] > lo


def _bounds(reader: pq.ParquetFile, group: int, schema: pa.Schema, column: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    chunk = reader.metadata.row_group(group).column(schema.get_field_index(column))
    stats = chunk.statistics
    if stats is None or not stats.has_min_max:
        return None
    lo, hi = pd.Timestamp(stats.min), pd.Timestamp(stats.max)
    return (
        lo.tz_localize("UTC") if lo.tzinfo is None else lo.tz_convert("UTC"),
        hi.tz_localize("UTC") if hi.tzinfo is None else hi.tz_convert("UTC"),
    )


def _first_malformed_line(path: Path, gzipped: bool, *, rows_before: int, columns: int) -> int | None:
    """The line where the first row after ``rows_before`` good rows has another number of fields than the header (the
    reader's error does not say where); None when none does."""
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") if gzipped else path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            for n, fields in enumerate(reader):
                if n > rows_before and len(fields) != columns:
                    return reader.line_num
        except (csv.Error, UnicodeDecodeError, EOFError, OSError):
            return reader.line_num + 1
    return None


def _csv_batches(path: Path, gzipped: bool, source: str, partition: str, null_values, batch_rows) -> Iterator[pa.Table]:
    try:
        with gzip.open(path, "rt", encoding="utf-8-sig") if gzipped else path.open(encoding="utf-8-sig") as handle:
            header = handle.readline()
        names = list(pd.read_csv(io.StringIO(header), nrows=0).columns)
    except _READ_ERRORS as exc:
        raise PoloInputError(f"cannot read file: {exc}", source=source, field="file", partition=partition) from None

    def refused(exc: Exception, rows_before: int) -> PoloInputError:
        bad = _first_malformed_line(path, gzipped, rows_before=rows_before, columns=len(names))
        where = f"line {bad:,}" if bad else f"a line after line {rows_before + 1:,}"
        return PoloInputError(f"cannot read {where}: {exc}", source=source, field="file", partition=partition)

    try:
        stream = pa.input_stream(str(path), compression="gzip" if gzipped else None)
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=max(1 << 16, min(16 << 20, batch_rows * 256))),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, null_values=list(null_values), strings_can_be_null=True
            ),
        )
    except _READ_ERRORS as exc:  # the reader reads ahead: a bad line in its first blocks stops it here
        raise refused(exc, 0) from None
    done = 0  # rows of the file already yielded
    pending: list[pa.RecordBatch] = []
    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except _READ_ERRORS as exc:
            raise refused(exc, done + rows) from None
        pending.append(batch)
        rows += batch.num_rows
        if rows >= batch_rows:
            yield pa.Table.from_batches(pending)
            done, pending, rows = done + rows, [], 0
    if pending or not done:
        yield pa.Table.from_batches(pending, schema=reader.schema)


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
    lo, hi = PLAUSIBLE_YEARS
    low, high = (int(np.datetime64(f"{year}-01-01", array.type.unit).astype(np.int64)) for year in PLAUSIBLE_YEARS)
    bounds = pc.min_max(array.cast(pa.int64()))  # one pass over the values, no calendar
    if low <= bounds["min"].as_py() and bounds["max"].as_py() < high:
        return
    years = pc.year(array)
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


def numeric(array: pa.ChunkedArray) -> pd.Series:
    """Amounts as float64; text that is not a number becomes NaN (callers refuse NaN)."""
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type) or pa.types.is_decimal(array.type):
        return array.cast(pa.float64()).to_pandas()
    return pd.to_numeric(array.cast(pa.string()).to_pandas(), errors="coerce")


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
