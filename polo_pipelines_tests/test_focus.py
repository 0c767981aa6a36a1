"""FOCUS ingestion, verified on the real FOCUS 1.0 sample (AWS, Azure, Oracle, September 2024)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.focus import export as focus
from polo_pipelines.sources.locations import open_location
from polo_pipelines.store.events import property_dicts

# Real third-party data (CC BY 4.0, attribution in data/focus-1.0/README.md), kept in the repo so a clone is complete.
SAMPLE = Path(__file__).resolve().parent / "data" / "focus-1.0" / "focus_sample.csv"
SEPT = (dt.date(2024, 9, 1), dt.date(2024, 10, 1))


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE, keep_default_na=False, na_values=["NULL"])
    frame["day"] = pd.to_datetime(frame["ChargePeriodStart"]).dt.date
    return frame


def test_real_sample_reconciles_per_day_and_provider(raw):
    window = focus.collect(open_location(str(SAMPLE)), *SEPT)
    events = window.events
    assert window.rows == 1000 == len(raw)
    assert sum(int(p["rows"]) for p in property_dicts(events)) == 1000
    want = raw.groupby(["day", "ProviderName"])[["BilledCost", "EffectiveCost"]].sum()
    got = (
        events.assign(day=events["event_time"].dt.date, ProviderName=events["provider"])
        .groupby(["day", "ProviderName"])[["billed_cost", "value"]]
        .sum()
    )
    joined = want.join(got, how="outer")
    assert joined.notna().all().all(), "a day/provider exists on one side only"
    assert (joined["BilledCost"] - joined["billed_cost"]).abs().max() <= 1e-6
    assert (joined["EffectiveCost"] - joined["value"]).abs().max() <= 1e-6
    rows = pd.Series([int(p["rows"]) for p in property_dicts(events)])
    by_category = rows.groupby(events["charge_category"]).sum()
    assert by_category.to_dict() == raw["ChargeCategory"].value_counts().to_dict()


def test_real_sample_ids_and_tags(raw):
    events = focus.collect(open_location(str(SAMPLE)), *SEPT).events
    azure = events[events["provider"] == "Microsoft"]
    assert (azure["resource_arn"] == azure["resource_arn"].str.lower()).all()
    assert (azure["aws_account_id"] == "").all()
    aws = events[events["provider"] == "AWS"]
    assert (aws["aws_account_id"] != "").all()
    no_id = events[events["resource_arn"].str.startswith("focus:")]
    assert len(no_id) and all(a.count("/") == 2 for a in no_id["resource_arn"])
    tagged = [p for p in property_dicts(events) if "tag:environment" in p]
    assert tagged, "the sample's Tags JSON lands in properties"


def test_a_day_window_holds_only_that_day(raw):
    day = dt.date(2024, 9, 18)
    events = focus.collect(open_location(str(SAMPLE)), day, day + dt.timedelta(days=1)).events
    assert set(events["event_time"].dt.date) == {day}
    assert events["billed_cost"].sum() == pytest.approx(raw.loc[raw["day"] == day, "BilledCost"].sum(), abs=1e-9)


def _mini(**over) -> dict:
    base = {
        "BilledCost": "1.5",
        "EffectiveCost": "1.25",
        "ListCost": "2",
        "BillingCurrency": "USD",
        "ChargePeriodStart": "2026-03-02T05:00:00Z",
        "ChargePeriodEnd": "2026-03-02T06:00:00Z",
        "ChargeCategory": "Usage",
        "ProviderName": "Google Cloud",
        "ServiceName": "Compute Engine",
        "SubAccountId": "proj-1",
        "ResourceId": "vm-1",
        "Tags": "{}",
    }
    return {**base, **over}


def _write(path: Path, rows: list[dict], fmt: str = "csv") -> Path:
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        for col in ("BilledCost", "EffectiveCost", "ListCost"):
            frame[col] = frame[col].astype(float)
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


DAY = (dt.date(2026, 3, 2), dt.date(2026, 3, 3))


def test_focus_1_3_names_parquet_and_folders(tmp_path):
    v13 = _mini()
    v13["ServiceProviderName"] = v13.pop("ProviderName")
    _write(tmp_path / "exp" / "a.parquet", [v13], "parquet")
    _write(tmp_path / "exp" / "nested" / "b.csv", [_mini(ResourceId="", BilledCost="3", EffectiveCost="3")])
    events = focus.collect(open_location(str(tmp_path / "exp")), *DAY).events
    assert sorted(events["resource_arn"]) == ["focus:Google Cloud/proj-1/Compute Engine", "vm-1"]
    assert events["value"].sum() == pytest.approx(4.25)
    assert set(events["provider"]) == {"Google Cloud"}


def test_foreign_currency_is_converted_with_a_rate_or_refused(tmp_path):
    path = _write(tmp_path / "eur.csv", [_mini(BillingCurrency="EUR")])
    with pytest.raises(PoloInputError) as info:
        focus.collect(open_location(str(path)), *DAY)
    assert (info.value.field, info.value.partition) == ("BillingCurrency", "2026-03-02")
    events = focus.collect(open_location(str(path)), *DAY, fx_rates={"EUR": 1.1}).events
    assert events["billed_cost"].sum() == pytest.approx(1.65)


@pytest.mark.parametrize(
    "rows, field",
    [
        ([_mini(BilledCost="NaN")], "BilledCost"),
        ([_mini(EffectiveCost="")], "EffectiveCost"),
        ([_mini(EffectiveCost="12,50")], "EffectiveCost"),
        ([_mini(ChargeCategory="Misc")], "ChargeCategory"),
        ([_mini(ChargePeriodStart="yesterday")], "ChargePeriodStart"),
        ([_mini(Tags="{not json")], "Tags"),
    ],
)
def test_malformed_rows_are_refused_naming_field_and_partition(tmp_path, rows, field):
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(PoloInputError) as info:
        focus.collect(open_location(str(path)), *DAY)
    assert info.value.field == field
    assert info.value.partition == "2026-03-02"
    assert str(path) in info.value.source


def test_an_unparseable_header_is_refused(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("this is; not a FOCUS header\n1;2\n")
    with pytest.raises(PoloInputError, match="not a FOCUS export") as info:
        focus.collect(open_location(str(path)), *DAY)
    assert info.value.field == "BilledCost"
    gz = tmp_path / "garbage.csv.gz"
    gz.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(PoloInputError, match="cannot read file"):
        focus.collect(open_location(str(gz)), *DAY)


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoloInputError, match="no FOCUS files"):
        focus.collect(open_location(str(tmp_path / "empty")), *DAY)


def test_s3_source(tmp_path, raw):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="billing")
        s3.put_object(Bucket="billing", Key="focus/2024-09/focus_sample.csv", Body=SAMPLE.read_bytes())
        folder = focus.collect(open_location("s3://billing/focus", s3_client=s3), *SEPT)
        single = focus.collect(open_location("s3://billing/focus/2024-09/focus_sample.csv", s3_client=s3), *SEPT)
    assert folder.rows == single.rows == 1000
    assert folder.events["billed_cost"].sum() == pytest.approx(raw["BilledCost"].sum(), abs=1e-6)


def test_the_same_file_twice_in_a_folder_is_counted_once(tmp_path):
    path = _write(tmp_path / "exp" / "a.csv", [_mini()])
    (tmp_path / "exp" / "copy of a.csv").write_bytes(path.read_bytes())
    window = focus.collect(open_location(str(tmp_path / "exp")), *DAY)
    assert window.events["value"].sum() == pytest.approx(1.25)
    assert window.duplicate_files == [f"{tmp_path / 'exp'}/copy of a.csv"]


def test_rows_repeated_in_every_column_are_refused_unless_allowed(tmp_path):
    path = _write(tmp_path / "dup.csv", [_mini(), _mini(), _mini(ResourceId="vm-2")])
    with pytest.raises(PoloInputError, match="repeat another row") as info:
        focus.collect(open_location(str(path)), *DAY)
    assert (info.value.field, info.value.partition) == ("rows", "2026-03-02") and str(path) in info.value.source
    kept = focus.collect(open_location(str(path)), *DAY, allow_duplicate_rows=True)
    assert kept.events["value"].sum() == pytest.approx(3 * 1.25)
    # the same rows in two files with different bytes (re-delivered under another name): both files named
    _write(tmp_path / "two" / "a.csv", [_mini()])
    _write(tmp_path / "two" / "b.csv", [_mini(ResourceId="vm-9"), _mini()])
    with pytest.raises(PoloInputError, match="a.csv and .*b.csv"):
        focus.collect(open_location(str(tmp_path / "two")), *DAY)


@pytest.mark.parametrize("when", ["1601-01-01T00:00:00", "9999-12-31T00:00:00"])
def test_out_of_range_dates_in_parquet_are_refused_naming_the_field(tmp_path, when):
    row = _mini()
    table = pa.table({k: [v] for k, v in row.items() if k != "ChargePeriodStart"})
    table = table.append_column("ChargePeriodStart", pa.array([dt.datetime.fromisoformat(when)], type=pa.timestamp("us", tz="UTC")))
    pq.write_table(table, tmp_path / "far.parquet")
    with pytest.raises(PoloInputError) as info:
        focus.collect(open_location(str(tmp_path / "far.parquet")), *DAY)
    assert info.value.field == "ChargePeriodStart" and "far.parquet" in info.value.source


def test_non_utf8_text_in_parquet_is_refused_naming_the_file(tmp_path):
    row = _mini()
    table = pa.table({k: [v] for k, v in row.items() if k != "ResourceId"})
    table = table.append_column("ResourceId", pa.array([b"vm-\xff\xfe"], type=pa.binary()))
    pq.write_table(table, tmp_path / "latin.parquet")
    with pytest.raises(PoloInputError) as info:
        focus.collect(open_location(str(tmp_path / "latin.parquet")), *DAY)
    assert "latin.parquet" in info.value.source and info.value.partition == "2026-03-02"


def test_batches_of_any_size_give_the_events_of_one_read(tmp_path):
    """The real sample read in 64 KiB blocks, and a Parquet copy in row groups of 10, give the events of one read."""
    copy = tmp_path / "sample.parquet"
    frame = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False).replace({"NULL": None, "": None})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), copy, row_group_size=10)
    for path in (SAMPLE, copy):
        whole = focus.collect(open_location(str(path)), *SEPT, batch_rows=10_000_000)
        parts = focus.collect(open_location(str(path)), *SEPT, batch_rows=1)
        assert (parts.rows, len(parts.events)) == (whole.rows, len(whole.events)) == (1000, 992)
        a, b = whole.events, parts.events
        numeric = ["value", "billed_cost", "list_cost"]
        rest = [c for c in a.columns if c not in (*numeric, "properties", "_loaded_at")]
        assert a[rest].equals(b[rest]) and np.allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=0, atol=1e-9)
        assert property_dicts(a) == property_dicts(b)


def test_a_row_repeated_in_a_later_batch_or_file_is_refused(tmp_path):
    rows = [_mini(ResourceId=f"vm-{n}") for n in range(50)] + [_mini(ResourceId="vm-7")]
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), path, row_group_size=10)
    with pytest.raises(PoloInputError, match="1 row\\(s\\) repeat another row in every column, first the Usage row of vm-7"):
        focus.collect(open_location(str(path)), *DAY, batch_rows=10)
    assert focus.collect(open_location(str(path)), *DAY, batch_rows=10, allow_duplicate_rows=True).rows == 51


def test_a_window_with_more_events_than_memory_holds_stops_with_a_message(tmp_path, monkeypatch):
    path = _write(tmp_path / "many.csv", [_mini(ResourceId=f"vm-{n}") for n in range(20)])
    monkeypatch.setenv("POLO_MAX_EVENTS", "10")
    with pytest.raises(PoloInputError, match="more than 10 events") as info:
        focus.collect(open_location(str(path)), *DAY)
    assert info.value.field == "events" and "many.csv" in info.value.source


@settings(max_examples=50, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 40), max_size=30), max_size=12))
def test_seen_hashes_find_every_earlier_row_and_its_file(batches):
    """The log-structured runs answer like a dictionary of every hash added before, whatever the batch sizes."""
    from polo_pipelines.sources.files import SeenHashes

    seen, reference = SeenHashes(), {}
    for tag, batch in enumerate(batches):
        hashes = np.array(batch, dtype=np.uint64)
        expected = [reference.get(h, -1) for h in batch]
        assert seen.find(hashes).tolist() == expected
        seen.add(hashes, tag)
        for h in batch:
            reference.setdefault(h, tag)


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.sampled_from([None, "", "a", "b", "ab", "B", "é", "z", "vm-10", "vm-9"])), max_size=20),
        max_size=8,
    )
)
def test_each_event_keeps_the_largest_text_its_rows_give(batches):
    """An event's resource type and name: the largest non-empty value in text order, whatever order and batches the
    rows come in (two values for one event in a batch, a larger or smaller one in a later batch)."""
    from polo_pipelines.sources.files import Placed, text_codes

    largest, held, reference = focus.LargestText(), np.full(6, -1, dtype=np.int64), {}
    for batch in (b for b in batches if b):
        slot, group = np.unique([event for event, _ in batch], return_inverse=True)
        codes = text_codes(pa.array([value for _, value in batch], type=pa.string()), source="t", field="ResourceName", partition="p")
        largest.offer(held, Placed(group, np.zeros(0, dtype=np.int64), slot, np.zeros(0, dtype=bool)), codes)
        for event, value in batch:
            if value:
                reference[event] = max(reference.get(event, value), value)
    assert list(largest.texts_of(held)) == [reference.get(event, "") for event in range(6)]
