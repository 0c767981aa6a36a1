"""The shared pieces the export readers are built of (sources/files.py): text as codes, text hashes, a window's
events, reading ahead."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.files import SeenHashes, WindowEvents, read_ahead, text_codes, text_hashes

WHERE = {"source": "s3://bucket/export.parquet", "field": "line_item_resource_id", "partition": "2026-10-01"}
texts = st.lists(st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["i-0123456789abcdef0", "x" * 300])), max_size=40)


ids = st.integers(8, 60).flatmap(lambda n: st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=n, max_size=n)))


@settings(max_examples=80, deadline=None)
@given(first=st.one_of(texts, ids), second=st.one_of(texts, ids))
def test_a_texts_hash_depends_on_the_text_alone(first, second):
    """Whatever else a batch holds (ids of one length back to back, many lengths, long texts, nulls), equal texts hash
    alike and different texts apart: a row repeated in a later batch is found."""
    hashes = {}
    for values in (first, second + first[::2], first[1:]):
        for value, h in zip(values, text_hashes(pa.chunked_array([pa.array(values, type=pa.string())]))):
            assert hashes.setdefault(value, int(h)) == int(h)
    assert len(set(hashes.values())) == len(hashes)


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(texts, min_size=1, max_size=4), encoded=st.booleans())
def test_text_codes_give_every_rows_value(chunks, encoded):
    """Row groups come with dictionaries of their own (or none): the codes read back every row, None where missing."""
    arrays = [pa.array(c, type=pa.string()) for c in chunks]
    column = pa.chunked_array([a.dictionary_encode() if encoded else a for a in arrays])
    codes = text_codes(column, **WHERE)
    assert [codes.values[c] for c in codes.codes] == [v for c in chunks for v in c]
    assert codes.texts().tolist() == ["" if v is None else v for c in chunks for v in c]


def test_text_that_is_not_utf8_is_refused_naming_the_column():
    with pytest.raises(PoloInputError, match="not UTF-8") as info:
        text_codes(pa.chunked_array([pa.array([b"ok", b"\xff\xfe"], type=pa.binary())]), **WHERE)
    assert info.value.field == "line_item_resource_id"


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 9)), max_size=50), max_size=8))
def test_the_table_of_events_places_rows_as_hashing_does(batches):
    """A window short enough for the table of resources x cells, and one found by hashing: the same events, numbered
    in the order first seen, each row summed into its own."""
    table = WindowEvents(1, days=2, categories=5, partition="p")
    hashed = WindowEvents(1, days=2, categories=5, partition="p")
    hashed._table = None
    reference: dict[tuple[int, int], int] = {}
    for batch in batches:
        resource = np.array([r for r, _ in batch], dtype=np.int64)
        cell = np.array([c for _, c in batch], dtype=np.int64)
        new_keys = [k for k in dict.fromkeys(batch) if k not in reference]
        for key in batch:
            reference.setdefault(key, len(reference))
        for events in (table, hashed):
            placed = events.place(resource, cell, "s")
            events.add(placed, np.ones(len(batch)))
            assert placed.slot[placed.group].tolist() == [reference[k] for k in batch]
            assert [(int(resource[r]), int(cell[r])) for r in placed.first_rows[placed.new]] == new_keys
    assert len(table) == len(hashed) == len(reference)
    assert (
        table.sums.tolist()
        == hashed.sums.tolist()
        == [np.bincount([reference[k] for b in batches for k in b], minlength=len(reference)).tolist()]
    )


def test_an_event_outside_the_window_is_a_bug_not_a_wrong_sum():
    with pytest.raises(ValueError, match="outside the window"):
        WindowEvents(1, days=2, categories=5, partition="p").place(np.array([0]), np.array([10]), "s")


def test_reading_ahead_keeps_order_raises_where_asked_and_stops_its_thread():
    with read_ahead(iter(range(100))) as items:
        assert list(items) == list(range(100))

    def broken():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"), read_ahead(broken()) as items:
        assert next(items) == 1
        next(items)
    before = threading.active_count()
    closed = []

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    with read_ahead(endless()) as items:
        assert next(items) == 0  # the loop stops early (an error in the batch it got)
    assert closed == [True] and threading.active_count() <= before


@settings(max_examples=80, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 60), max_size=30), max_size=12))
def test_a_batch_with_a_repeat_is_refused_whole_and_one_without_is_added(batches):
    """``add_unless_repeated`` answers as a set of every hash added before would: a batch repeating an earlier hash or
    itself comes back with each repeating row (after its first) and the earlier tag, and adds nothing."""
    seen, added = SeenHashes(), {}
    for tag, batch in enumerate(batches):
        hashes = np.array(batch, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # spread over the bitmap's bits
        found = seen.add_unless_repeated(hashes, tag)
        twice = [h in batch[:i] for i, h in enumerate(batch)]
        earlier = [added.get(h, -1) for h in batch]
        if not any(twice) and all(e < 0 for e in earlier):
            assert found is None
            added.update((h, tag) for h in batch)
        else:
            repeated, tags = found
            assert repeated.tolist() == [t or e >= 0 for t, e in zip(twice, earlier)]
            assert tags.tolist() == earlier


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_timestamp_outside_the_plausible_years_is_refused_naming_the_field(unit):
    """A day in 2026 written as seconds read as milliseconds lands in 1970: such a column is refused, not loaded as a
    year nobody meant. The first and last plausible instants pass; nulls are left to the caller."""
    import datetime as dt

    from polo_pipelines.sources.files import utc_timestamps

    def column(*values, tz="UTC"):
        return pa.chunked_array([pa.array(list(values), type=pa.timestamp(unit, tz=tz))])

    edges = column(dt.datetime(1990, 1, 1), None, dt.datetime(2199, 12, 31, 23, 59, 59))
    assert utc_timestamps(edges, **WHERE).null_count == 1
    assert utc_timestamps(column(dt.datetime(2026, 10, 5), tz=None), **WHERE).type.tz == "UTC"
    for wrong in (dt.datetime(1989, 12, 31, 23, 59, 59), dt.datetime(2200, 1, 1)):
        with pytest.raises(PoloInputError, match=r"1 timestamp\(s\) outside the years 1990..2199") as info:
            utc_timestamps(column(dt.datetime(2026, 10, 5), wrong, None), **WHERE)
        assert info.value.field == WHERE["field"] and info.value.source == WHERE["source"]
    with pytest.raises(PoloInputError, match="outside the years"):
        utc_timestamps(pa.chunked_array([pa.array(["2026-10-05T00:00:00Z", "1970-01-21T10:00:00Z"])]), **WHERE)
