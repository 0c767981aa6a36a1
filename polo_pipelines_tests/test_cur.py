"""The AWS export reader: CUR 2.0 and legacy formats, amortization, manifests, S3, and bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import defaultdict
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.aws import cur
from polo_pipelines.sources.aws.sample import write_cur2, write_legacy
from polo_pipelines.sources.locations import open_location
from polo_pipelines.store.events import property_dicts

EXPORT = "polo-sample"


@pytest.fixture(scope="module")
def exports(tmp_path_factory, world_items):
    """The sample world's last 10 days in all three export formats."""
    world, items = world_items
    recent = [i for i in items if i.day >= world.end - dt.timedelta(days=10)]
    root = tmp_path_factory.mktemp("exports")
    write_cur2(recent, root / "cur2")
    write_legacy(recent, root / "legacy_parquet", fmt="parquet")
    write_legacy(recent, root / "legacy_csv", fmt="csv")
    return world, recent, root


def expected_effective(items) -> dict[tuple[dt.date, str], float]:
    """An independent reading of the amortization rules, per (day, charge category)."""
    out: dict[tuple[dt.date, str], float] = defaultdict(float)
    for i in items:
        if i.line_item_type == "SavingsPlanCoveredUsage":
            value = i.sp_effective
        elif i.line_item_type in ("SavingsPlanNegation", "SavingsPlanUpfrontFee"):
            value = 0.0
        elif i.line_item_type == "SavingsPlanRecurringFee":
            value = i.sp_commitment - i.sp_used
        else:
            value = i.unblended
        out[(i.day, cur.CHARGE_CATEGORY[i.line_item_type])] += value
    return out


@pytest.mark.parametrize("fmt", ["cur2", "legacy_parquet", "legacy_csv"])
def test_every_format_gives_the_same_reconciled_events(exports, fmt):
    world, items, root = exports
    start, end = world.end - dt.timedelta(days=10), world.end
    window = cur.collect(open_location(str(root / fmt)), EXPORT, start, end)
    events = window.events
    assert window.line_items == len(items)
    got = events.groupby([events["event_time"].dt.date, "charge_category"])["value"].sum().to_dict()
    want = expected_effective(items)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert events["billed_cost"].sum() == pytest.approx(sum(i.unblended for i in items), abs=1e-6)
    assert not events.duplicated(["resource_arn", "event_time", "charge_category"]).any()


def test_formats_agree_event_by_event(exports):
    world, _, root = exports
    start, end = world.end - dt.timedelta(days=3), world.end
    frames = []
    for fmt in ("cur2", "legacy_parquet", "legacy_csv"):
        e = cur.collect(open_location(str(root / fmt)), EXPORT, start, end).events
        frames.append(e.sort_values(["resource_arn", "event_time", "charge_category"]).reset_index(drop=True))
    cols = [
        "resource_arn",
        "resource_type",
        "resource_name",
        "event_time",
        "charge_category",
        "aws_account_id",
        "aws_region",
        "service",
        "actor_name",
    ]
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0][cols], other[cols])
        np.testing.assert_allclose(frames[0]["value"], other["value"], atol=1e-9)
        tags0 = [{k: v for k, v in p.items() if k.startswith("tag:") and k != "tag:aws:createdBy"} for p in property_dicts(frames[0])]
        tags1 = [
            {k: v for k, v in p.items() if k.startswith("tag:") and not k.startswith(("tag:aws", "tag:aws_"))}
            for p in property_dicts(other)
        ]
        assert tags0 == tags1


def test_events_carry_ids_tags_and_creator(exports):
    world, _, root = exports
    events = cur.collect(
        open_location(str(root / "cur2")), EXPORT, world.last_week_start, world.last_week_start + dt.timedelta(days=1)
    ).events
    alice = events[events["actor_name"] == "alice@example.com"]
    assert len(alice) == 5  # four new instances and their volume
    instances = alice[alice["resource_type"] == "ec2:instance"]
    one, props = instances.iloc[0], property_dicts(instances)[0]
    assert one["resource_arn"].startswith("arn:aws:ec2:us-east-1:111111111111:instance/i-")
    assert props["tag:cluster"] == "acme-prod-1"
    assert props["instance_type"] == "m5.2xlarge"
    nat = events[events["resource_type"] == "ec2:natgateway"]
    assert len(nat) == len(
        [c for c in ("acme-prod-1", "acme-prod-2", "beta-prod-1", "gamma-prod-1", "delta-prod-1", "staging-1", "test-1")]
    )
    service_level = events[events["resource_type"] == "aws:service"]
    assert set(service_level["resource_arn"]) >= {
        "aws:111111111111/AWSDataTransfer/us-east-1",
        "aws:333333333333/AmazonCloudWatch/us-east-1",
    }


@pytest.mark.parametrize(
    "rid, product, region, account, arn",
    [
        ("i-0abc", "AmazonEC2", "us-east-1", "1", "arn:aws:ec2:us-east-1:1:instance/i-0abc"),
        ("vol-9", "AmazonEC2", "eu-west-1", "2", "arn:aws:ec2:eu-west-1:2:volume/vol-9"),
        ("my-bucket", "AmazonS3", "us-east-1", "1", "arn:aws:s3:::my-bucket"),
        ("arn:aws:rds:us-east-1:1:db:x", "AmazonRDS", "us-east-1", "1", "arn:aws:rds:us-east-1:1:db:x"),
        ("fs-1", "AmazonEFS", "us-east-1", "1", "arn:aws:efs:us-east-1:1:fs-1"),
        ("", "AWSDataTransfer", "", "3", "aws:3/AWSDataTransfer/global"),
    ],
)
def test_resource_ids_become_arns(rid, product, region, account, arn):
    assert cur.resource_arn(rid, product, region, account) == arn


def test_arn_split():
    assert cur.split_arn("arn:aws:ec2:us-east-1:1:instance/i-1") == ("ec2:instance", "i-1")
    assert cur.split_arn("arn:aws:rds:us-east-1:1:db:main") == ("rds:db", "main")
    assert cur.split_arn("arn:aws:s3:::bucket") == ("s3", "bucket")
    assert cur.split_arn("aws:1/AmazonCloudWatch/us-east-1") == ("aws:service", "AmazonCloudWatch us-east-1 (account 1)")


# ------------------------------------------------------------ hand-made exports


def row(**kw):
    base = {
        "line_item_usage_start_date": pd.Timestamp("2026-10-05", tz="UTC"),
        "line_item_usage_account_id": "123456789012",
        "line_item_line_item_type": "Usage",
        "line_item_product_code": "AmazonEC2",
        "line_item_usage_type": "BoxUsage:m5.large",
        "line_item_resource_id": "i-1",
        "line_item_unblended_cost": 1.0,
        "line_item_currency_code": "USD",
        "product_region_code": "us-east-1",
    }
    return {**base, **kw}


def write_export(
    root: Path, rows: list[dict], *, period="2026-10", delivery="d1", drop=(), name="EXPORT-00001.parquet", row_group_size=None
) -> Path:
    frame = pd.DataFrame(rows).drop(columns=list(drop))
    rel = f"data/BILLING_PERIOD={period}/{delivery}/{name}"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), root / rel, row_group_size=row_group_size)
    manifest = root / f"metadata/BILLING_PERIOD={period}/{root.name}-Manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"executionId": delivery, "dataFiles": [f"s3://b/p/{root.name}/{rel}"]}))
    return root


DAY = (dt.date(2026, 10, 5), dt.date(2026, 10, 6))


def collect(root: Path, **kw):
    return cur.collect(open_location(str(root)), root.name, *DAY, **kw).events


def test_amortization_rules_per_line_item_type(tmp_path):
    rows = [
        row(
            line_item_line_item_type="SavingsPlanCoveredUsage",
            line_item_unblended_cost=10.0,
            savings_plan_savings_plan_effective_cost=6.0,
            savings_plan_total_commitment_to_date=np.nan,
            savings_plan_used_commitment=np.nan,
        ),
        row(line_item_line_item_type="SavingsPlanNegation", line_item_unblended_cost=-10.0),
        row(
            line_item_line_item_type="SavingsPlanRecurringFee",
            line_item_resource_id="arn:aws:savingsplans::1:savingsplan/x",
            line_item_unblended_cost=7.0,
            savings_plan_total_commitment_to_date=7.0,
            savings_plan_used_commitment=6.0,
        ),
        row(
            line_item_line_item_type="SavingsPlanUpfrontFee",
            line_item_resource_id="arn:aws:savingsplans::1:savingsplan/x",
            line_item_unblended_cost=100.0,
        ),
        row(
            line_item_line_item_type="DiscountedUsage",
            line_item_resource_id="i-2",
            line_item_unblended_cost=0.0,
            reservation_effective_cost=3.5,
        ),
        row(
            line_item_line_item_type="RIFee",
            line_item_resource_id="arn:aws:ec2:us-east-1:1:reserved-instances/r",
            line_item_unblended_cost=20.0,
            reservation_unused_amortized_upfront_fee_for_billing_period=1.25,
            reservation_unused_recurring_fee=0.75,
        ),
        row(line_item_line_item_type="Usage", line_item_resource_id="i-3", line_item_unblended_cost=2.0),
        row(line_item_line_item_type="Tax", line_item_resource_id="", line_item_unblended_cost=0.5),
        row(line_item_line_item_type="Credit", line_item_resource_id="", line_item_unblended_cost=-4.0),
        row(line_item_line_item_type="Refund", line_item_resource_id="", line_item_unblended_cost=-1.0),
    ]
    events = collect(write_export(tmp_path / "ex", rows)).set_index(["resource_name", "charge_category"])
    assert events.loc[("i-1", "Usage"), "value"] == pytest.approx(6.0)  # covered usage + negation
    assert events.loc[("i-1", "Usage"), "billed_cost"] == pytest.approx(0.0)
    assert events.loc[("x", "Purchase"), "value"] == pytest.approx(1.0)  # unused commitment; upfront fee amortized away
    assert events.loc[("i-2", "Usage"), "value"] == pytest.approx(3.5)
    assert events.loc[("r", "Purchase"), "value"] == pytest.approx(2.0)
    assert events.loc[("i-3", "Usage"), "value"] == pytest.approx(2.0)
    assert events.xs("Tax", level=1)["value"].sum() == pytest.approx(0.5)
    assert events.xs("Credit", level=1)["value"].sum() == pytest.approx(-4.0)
    assert events.xs("Adjustment", level=1)["value"].sum() == pytest.approx(-1.0)


def test_net_columns_are_used_where_present(tmp_path):
    rows = [
        row(line_item_unblended_cost=10.0, line_item_net_unblended_cost=9.0, pricing_public_on_demand_cost=10.0),
        row(
            line_item_resource_id="i-2",
            line_item_line_item_type="DiscountedUsage",
            line_item_unblended_cost=0.0,
            line_item_net_unblended_cost=0.0,
            reservation_effective_cost=4.0,
            reservation_net_effective_cost=3.6,
            pricing_public_on_demand_cost=8.0,
        ),
    ]
    events = collect(write_export(tmp_path / "ex", rows)).set_index("resource_name")
    assert events.loc["i-1", "value"] == pytest.approx(9.0)
    assert events.loc["i-1", "billed_cost"] == pytest.approx(9.0)
    assert events.loc["i-1", "list_cost"] == pytest.approx(10.0)
    assert events.loc["i-2", "value"] == pytest.approx(3.6)
    assert events.loc["i-2", "list_cost"] == pytest.approx(8.0)


def test_absent_optional_and_extra_columns_are_tolerated(tmp_path):
    rows = [row(some_new_column_aws_added="x")]
    events = collect(write_export(tmp_path / "ex", rows, drop=("product_region_code", "line_item_usage_type", "line_item_resource_id")))
    assert len(events) == 1
    assert events["resource_arn"][0] == "aws:123456789012/AmazonEC2/global"


def test_only_the_manifests_current_delivery_is_read(tmp_path):
    root = tmp_path / "ex"
    write_export(root, [row(line_item_unblended_cost=5.0)], delivery="first")
    write_export(root, [row(line_item_unblended_cost=7.0)], delivery="second")  # restated; old files stay in place
    events = collect(root)
    assert events["value"].sum() == pytest.approx(7.0)


def test_foreign_currency_needs_a_rate(tmp_path):
    root = write_export(tmp_path / "ex", [row(line_item_currency_code="EUR", line_item_unblended_cost=10.0)])
    with pytest.raises(PoloInputError) as info:
        collect(root)
    assert info.value.field == "line_item_currency_code"
    assert info.value.partition == "2026-10-05"
    assert "EXPORT-00001.parquet" in info.value.source
    assert collect(root, fx_rates={"EUR": 1.1})["value"].sum() == pytest.approx(11.0)


@pytest.mark.parametrize(
    "case, field",
    [
        ("missing_manifest", "manifest"),
        ("missing_file", None),
        ("missing_column", "line_item_unblended_cost"),
        ("nan_amount", "line_item_unblended_cost"),
        ("unknown_type", "line_item_line_item_type"),
        ("sp_without_effective", "savings_plan_savings_plan_effective_cost"),
    ],
)
def test_bad_exports_raise_errors_naming_source_field_and_partition(tmp_path, case, field):
    root = tmp_path / "ex"
    if case == "missing_manifest":
        root.mkdir()
    elif case == "missing_file":
        write_export(root, [row()])
        next(root.glob("data/**/*.parquet")).unlink()
    elif case == "missing_column":
        write_export(root, [row()], drop=("line_item_unblended_cost",))
    elif case == "nan_amount":
        write_export(root, [row(), row(line_item_resource_id="i-2", line_item_unblended_cost=np.nan)])
    elif case == "unknown_type":
        write_export(root, [row(line_item_line_item_type="Mystery")])
    elif case == "sp_without_effective":
        write_export(root, [row(line_item_line_item_type="SavingsPlanCoveredUsage")])
    with pytest.raises(PoloInputError) as info:
        collect(root)
    err = info.value
    assert err.field == field
    assert err.partition == "2026-10-05"
    assert str(root) in err.source
    assert "2026-10-05" in str(err)


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    root = write_export(tmp_path / "ex", [row()])
    next(root.glob("data/**/*.parquet")).write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(PoloInputError, match="cannot read file") as info:
        collect(root)
    assert info.value.source.endswith("EXPORT-00001.parquet")


def _corrupt_row_group(path: Path, group: int) -> None:
    """Overwrite the data pages of one row group's amount column with garbage, the file's footer intact."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(group).column(names.index("line_item_unblended_cost"))
    raw = bytearray(path.read_bytes())
    raw[chunk.data_page_offset : chunk.data_page_offset + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(raw))


def test_a_corrupt_row_group_in_the_middle_of_a_file_is_named(tmp_path):
    rows = [row(line_item_resource_id=f"i-{n}", line_item_unblended_cost=float(n)) for n in range(1000)]
    root = write_export(tmp_path / "ex", rows, row_group_size=100)
    path = next(root.glob("data/**/*.parquet"))
    assert collect(root, batch_rows=250)["value"].sum() == pytest.approx(sum(range(1000)))
    _corrupt_row_group(path, 5)
    for batch_rows in (1, 250, 10_000):  # the group alone, or inside a batch of several
        with pytest.raises(PoloInputError) as info:
            collect(root, batch_rows=batch_rows)
        err = info.value
        assert "row group 5 of 10" in str(err) and err.source.endswith("EXPORT-00001.parquet")
        assert (err.field, err.partition) == ("file", "2026-10-05")


def test_a_malformed_csv_line_in_the_middle_of_a_file_is_named(tmp_path):
    root = tmp_path / "ex"
    frame = pd.DataFrame([row(line_item_resource_id=f"i-{n}") for n in range(20_000)])
    frame["line_item_usage_start_date"] = "2026-10-05T00:00:00Z"
    rel = "data/BILLING_PERIOD=2026-10/d/EXPORT-00001.csv.gz"
    (root / rel).parent.mkdir(parents=True)
    lines = frame.to_csv(index=False).splitlines()
    lines[15_001] += ",an extra field"  # the file's line 15,002
    (root / rel).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    (root / "metadata/BILLING_PERIOD=2026-10").mkdir(parents=True)
    (root / "metadata/BILLING_PERIOD=2026-10/ex-Manifest.json").write_text(json.dumps({"dataFiles": [rel]}))
    for batch_rows in (1_000, 1_000_000):
        with pytest.raises(PoloInputError) as info:
            collect(root, batch_rows=batch_rows)
        assert "cannot read line 15,002: CSV parse error: Expected 9 columns, got 10" in str(info.value)
        assert info.value.source.endswith("EXPORT-00001.csv.gz") and info.value.field == "file"


def test_batches_of_any_size_give_the_events_of_one_read(exports):
    """Line items read a few at a time (row groups of 100, CSV blocks of 64 KiB) give the same events as one read."""
    world, _, root = exports
    start, end = world.end - dt.timedelta(days=10), world.end
    for fmt in ("cur2", "legacy_parquet", "legacy_csv"):
        for path in (root / fmt).glob("**/*.parquet"):
            pq.write_table(pq.read_table(path), path, row_group_size=100)
        whole = cur.collect(open_location(str(root / fmt)), EXPORT, start, end, batch_rows=10_000_000)
        parts = cur.collect(open_location(str(root / fmt)), EXPORT, start, end, batch_rows=1)
        assert parts.line_items == whole.line_items
        a, b = whole.events.reset_index(drop=True), parts.events.reset_index(drop=True)
        assert len(a) > 100 and _same(a, b)
        assert property_dicts(a) == property_dicts(b)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    numeric = ["value", "billed_cost", "list_cost"]
    rest = [c for c in a.columns if c not in (*numeric, "properties", "_loaded_at")]
    return a[rest].equals(b[rest]) and np.allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    costs=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=32), st.text(max_size=6), st.none()), min_size=1, max_size=8
    ),
    kinds=st.lists(st.sampled_from(["Usage", "Tax", "Credit", "Fee", "Bogus", ""]), min_size=1, max_size=8),
)
def test_malformed_csv_rows_never_slip_through(tmp_path_factory, costs, kinds):
    """Whatever the rows hold, the reader either refuses them with a PoloInputError or returns events that add up."""
    root = tmp_path_factory.mktemp("fuzz") / "ex"
    n = min(len(costs), len(kinds))
    frame = pd.DataFrame(
        [row(line_item_unblended_cost=costs[i], line_item_line_item_type=kinds[i], line_item_resource_id=f"i-{i}") for i in range(n)]
    )
    frame["line_item_usage_start_date"] = "2026-10-05T00:00:00Z"
    rel = "data/BILLING_PERIOD=2026-10/d/EXPORT-00001.csv"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / rel, index=False)
    (root / "metadata/BILLING_PERIOD=2026-10").mkdir(parents=True)
    (root / "metadata/BILLING_PERIOD=2026-10/ex-Manifest.json").write_text(json.dumps({"dataFiles": [rel]}))
    try:
        events = collect(root)
    except PoloInputError as err:
        assert err.partition == "2026-10-05" and err.field
        return
    parsed = pd.to_numeric(frame["line_item_unblended_cost"], errors="coerce")
    assert parsed.notna().all() and frame["line_item_line_item_type"].isin(cur.CHARGE_CATEGORY).all()
    assert events["value"].sum() == pytest.approx(parsed.sum(), rel=1e-9, abs=1e-9)


# ------------------------------------------------------------ S3


def test_s3_export_reads_like_the_local_folder(exports):
    world, _, root = exports
    start, end = world.end - dt.timedelta(days=2), world.end
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="polo-sample-billing")
        for path in (root / "cur2").rglob("*"):
            if path.is_file():
                s3.put_object(Bucket="polo-sample-billing", Key=f"cur/{EXPORT}/{path.relative_to(root / 'cur2')}", Body=path.read_bytes())
        remote = cur.collect(open_location(f"s3://polo-sample-billing/cur/{EXPORT}", s3_client=s3), EXPORT, start, end)
        with pytest.raises(PoloInputError, match="no manifest"):
            cur.collect(
                open_location(f"s3://polo-sample-billing/cur/{EXPORT}", s3_client=s3), EXPORT, dt.date(2024, 1, 1), dt.date(2024, 1, 2)
            )
    local = cur.collect(open_location(str(root / "cur2")), EXPORT, start, end)
    assert remote.line_items == local.line_items
    assert remote.events["value"].sum() == pytest.approx(local.events["value"].sum())
    assert all(s.startswith("s3://polo-sample-billing/") for s in remote.sources)


@pytest.mark.parametrize("tags, ok", [('{"user_team": "core", "user_cost_center": null}', True), ("[1, 2]", False), ("{not json", False)])
def test_csv_export_map_columns_are_json_objects(tmp_path, tags, ok):
    """CUR 2.0 CSV exports hold resource_tags as JSON text."""
    root = tmp_path / "ex"
    frame = pd.DataFrame([row(resource_tags=tags)])
    frame["line_item_usage_start_date"] = "2026-10-05T00:00:00Z"
    rel = "data/BILLING_PERIOD=2026-10/d/EXPORT-00001.csv.gz"
    (root / rel).parent.mkdir(parents=True)
    frame.to_csv(root / rel, index=False, compression="gzip")
    (root / "metadata/BILLING_PERIOD=2026-10").mkdir(parents=True)
    (root / "metadata/BILLING_PERIOD=2026-10/ex-Manifest.json").write_text(json.dumps({"dataFiles": [rel]}))
    if ok:
        props = property_dicts(collect(root))[0]
        assert props["tag:team"] == "core" and "tag:cost_center" not in props
    else:
        with pytest.raises(PoloInputError) as info:
            collect(root)
        assert (info.value.field, info.value.partition) == ("resource_tags", "2026-10-05")


def test_a_file_listed_twice_or_copied_under_another_key_is_read_once(tmp_path):
    root = write_export(tmp_path / "EXP", [row(line_item_unblended_cost=494.37)])
    manifest = root / "metadata/BILLING_PERIOD=2026-10/EXP-Manifest.json"
    doc = json.loads(manifest.read_text())
    rel = "data/BILLING_PERIOD=2026-10/d1/EXPORT-00001.parquet"
    (root / "data/BILLING_PERIOD=2026-10/d1/EXPORT-00002.parquet").write_bytes((root / rel).read_bytes())
    doc["dataFiles"] = [doc["dataFiles"][0], doc["dataFiles"][0], doc["dataFiles"][0].replace("00001", "00002")]
    manifest.write_text(json.dumps(doc))
    window = cur.collect(open_location(str(root)), "EXP", *DAY)
    assert window.events["value"].sum() == pytest.approx(494.37)
    assert len(window.duplicate_files) == 2


@pytest.mark.parametrize("line_item_id", ["abc123", "d4lerpang7nfsmq3t3vy4uyincktg4sagjw3tvgcbsxeeh6exgs6"])
def test_a_line_item_id_repeated_in_a_file_is_refused(tmp_path, line_item_id):
    """Short ids, and real ones (52 characters, every id of the file one length: hashed by words where they lie)."""
    item = {"identity_line_item_id": line_item_id, "identity_time_interval": "2026-10-05T00:00:00Z/2026-10-05T01:00:00Z"}
    other = "def" if len(line_item_id) < 8 else line_item_id[::-1]
    rows = [row(**item), row(identity_line_item_id=other, identity_time_interval=item["identity_time_interval"]), row(**item)]
    root = write_export(tmp_path / "EXP", rows, row_group_size=1)
    for batch_rows in (1, 1000):  # the repeat in a later batch of the file, or in the same one
        with pytest.raises(PoloInputError) as info:
            collect(root, batch_rows=batch_rows)
        assert (
            info.value.field == "identity_line_item_id" and line_item_id in str(info.value) and "EXPORT-00001.parquet" in info.value.source
        )
    # the same id in another hour is another line item
    ok = write_export(tmp_path / "OK", [row(**item), row(identity_line_item_id=line_item_id, identity_time_interval="later")])
    assert collect(ok)["value"].sum() == pytest.approx(2.0)


def _cur2_with_categories(root: Path) -> Path:
    """CUR 2.0 Parquet: ``cost_category`` is a map column of category name -> value (empty when uncategorized)."""
    rows = [
        row(line_item_resource_id="i-1", cost_category=[("Team", "checkout"), ("Environment", "prod")]),
        row(line_item_resource_id="i-2", cost_category=[("Team", "search"), ("Environment", "")]),
        row(line_item_resource_id="i-3", cost_category=[]),
    ]
    frame = pd.DataFrame(rows)
    schema = pa.Schema.from_pandas(frame.drop(columns="cost_category"), preserve_index=False).append(
        pa.field("cost_category", pa.map_(pa.string(), pa.string()))
    )
    rel = "data/BILLING_PERIOD=2026-10/d1/EXPORT-00001.parquet"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), root / rel)
    (root / "metadata/BILLING_PERIOD=2026-10").mkdir(parents=True)
    (root / f"metadata/BILLING_PERIOD=2026-10/{root.name}-Manifest.json").write_text(json.dumps({"dataFiles": [rel]}))
    return root


def test_cost_categories_of_both_export_generations_become_properties(tmp_path):
    events = collect(_cur2_with_categories(tmp_path / "cur2"))
    props = dict(zip(events["resource_arn"].str.rsplit("/", n=1).str[-1], property_dicts(events)))
    assert (props["i-1"]["cost_category:Team"], props["i-1"]["cost_category:Environment"]) == ("checkout", "prod")
    assert props["i-2"]["cost_category:Team"] == "search" and "cost_category:Environment" not in props["i-2"]
    assert not any(k.startswith("cost_category:") for k in props["i-3"])

    # legacy CSV: one costCategory/<name> column per category
    root = tmp_path / "legacy"
    frame = pd.DataFrame([row(line_item_resource_id="i-1"), row(line_item_resource_id="i-2")])
    frame = frame.rename(columns={c: "lineItem/" + c[len("line_item_") :] for c in frame.columns if c.startswith("line_item_")})
    frame = frame.rename(
        columns=lambda c: c if "/" not in c else c.split("/")[0] + "/" + "".join(p.title() for p in c.split("/")[1].split("_"))
    )
    frame = frame.rename(columns={"product_region_code": "product/regionCode", "lineItem/ResourceId": "lineItem/ResourceId"})
    frame["costCategory/Team"] = ["checkout", ""]
    frame["lineItem/UsageStartDate"] = "2026-10-05T00:00:00Z"
    rel = "data/BILLING_PERIOD=2026-10/d/legacy-00001.csv.gz"
    (root / rel).parent.mkdir(parents=True)
    frame.to_csv(root / rel, index=False, compression="gzip")
    (root / "metadata/BILLING_PERIOD=2026-10").mkdir(parents=True)
    (root / "metadata/BILLING_PERIOD=2026-10/legacy-Manifest.json").write_text(json.dumps({"dataFiles": [rel]}))
    legacy = collect(root)
    got = {arn.rsplit("/", 1)[-1]: p.get("cost_category:Team") for arn, p in zip(legacy["resource_arn"], property_dicts(legacy))}
    assert got == {"i-1": "checkout", "i-2": None}


def test_line_item_type_names_every_type_merged_into_an_event(tmp_path):
    """An event merges the day's line items of one resource and charge category: its line_item_type was the first one's."""
    root = write_export(
        tmp_path / "ex",
        [
            row(line_item_line_item_type="Usage", line_item_unblended_cost=1.0),
            row(line_item_line_item_type="DiscountedUsage", line_item_unblended_cost=2.0, reservation_effective_cost=2.0),
            row(line_item_resource_id="i-2", line_item_line_item_type="Usage"),
        ],
    )
    events = collect(root)
    kinds = {arn.rsplit("/", 1)[-1]: p["line_item_type"] for arn, p in zip(events["resource_arn"], property_dicts(events))}
    assert kinds == {"i-1": "DiscountedUsage,Usage", "i-2": "Usage"}


# ------------------------------------------------------------ commitment fees across a month boundary

ACCOUNTS = {"111111111111": 30.0, "222222222222": 62.0}  # each account's reservation: unused recurring fee of the month


def _ri_fee(start: str, end: str, account: str, unused: float) -> dict:
    """A monthly RIFee as AWS writes it: the billing period as its interval, no resource id, the reservation's ARN."""
    return row(
        line_item_usage_start_date=pd.Timestamp(start, tz="UTC"),
        line_item_usage_end_date=pd.Timestamp(end, tz="UTC"),
        line_item_usage_account_id=account,
        line_item_line_item_type="RIFee",
        line_item_resource_id=None,
        line_item_usage_type="HeavyUsage:m5.large",
        line_item_unblended_cost=300.0,
        reservation_reservation_a_r_n=f"arn:aws:ec2:us-east-1:{account}:reserved-instances/ri-{account[:3]}",
        reservation_unused_amortized_upfront_fee_for_billing_period=0.0,
        reservation_unused_recurring_fee=unused,
    )


@pytest.fixture
def fee_export(tmp_path):
    """Two months of one usage line a day, and each account's RIFee for each month, in rows of small row groups."""
    root = tmp_path / "fees"
    for period, start, end in (("2026-11", "2026-11-01", "2026-12-01"), ("2026-12", "2026-12-01", "2027-01-01")):
        first = pd.Timestamp(start, tz="UTC")
        days = (pd.Timestamp(end) - pd.Timestamp(start)).days
        usage = [
            row(
                line_item_usage_start_date=first + pd.Timedelta(days=d, hours=h),
                line_item_usage_end_date=first + pd.Timedelta(days=d, hours=h + 1),
                line_item_unblended_cost=0.5,
            )
            for d in range(days)
            for h in (0, 12)
        ]
        fees = [_ri_fee(start, end, account, unused) for account, unused in ACCOUNTS.items()]
        write_export(root, fees + usage, period=period, row_group_size=4)  # the fees first, in a row group of their own days
    return root


def _window(root: Path, start: dt.date, end: dt.date):
    return cur.collect(open_location(str(root)), root.name, start, end)


def test_a_recurring_reservation_fee_is_spread_over_its_month_on_the_reservation(fee_export):
    window = _window(fee_export, dt.date(2026, 11, 28), dt.date(2026, 12, 3))
    fees = window.events[window.events["charge_category"] == "Purchase"]
    assert set(fees["resource_arn"]) == {f"arn:aws:ec2:us-east-1:{a}:reserved-instances/ri-{a[:3]}" for a in ACCOUNTS}
    assert set(fees["resource_type"]) == {"ec2:reserved-instances"}
    by_day = fees.set_index([fees["event_time"].dt.date, "aws_account_id"])
    for account, unused in ACCOUNTS.items():
        for day in (dt.date(2026, 11, 28), dt.date(2026, 11, 30)):
            assert by_day.loc[(day, account), "value"] == pytest.approx(unused / 30, abs=1e-9)  # November's 30 days
            assert by_day.loc[(day, account), "billed_cost"] == 0.0  # billed on the 1st, outside the window
        for day in (dt.date(2026, 12, 1), dt.date(2026, 12, 2)):
            assert by_day.loc[(day, account), "value"] == pytest.approx(unused / 31, abs=1e-9)  # December's 31
        assert by_day.loc[(dt.date(2026, 12, 1), account), "billed_cost"] == 300.0  # the invoice's day keeps it whole
        assert by_day.loc[(dt.date(2026, 12, 2), account), "billed_cost"] == 0.0
    props = dict(zip(zip(fees["event_time"].dt.date, fees["aws_account_id"]), property_dicts(fees)))
    assert props[(dt.date(2026, 11, 29), "111111111111")]["spread_over"] == "2026-11-01..2026-11-30"
    assert props[(dt.date(2026, 11, 29), "111111111111")]["line_items"] == "0"  # a share of a line item billed earlier
    assert props[(dt.date(2026, 12, 1), "111111111111")]["line_items"] == "1"
    assert window.line_items == 5 * 2 + 2  # usage of 5 days, and December's fees: November's were billed before


def test_a_fee_spread_over_days_is_one_line_item_not_a_repeated_id(tmp_path):
    """Every line item of a real export has an id; a monthly fee spread over a window's days is still one line item."""
    fee = _ri_fee("2026-11-01", "2026-12-01", "111111111111", 30.0)
    fee.update(identity_line_item_id="fee-1", identity_time_interval="2026-11-01T00:00:00Z/2026-12-01T00:00:00Z")
    usage = row(
        line_item_usage_start_date=pd.Timestamp("2026-11-02", tz="UTC"),
        line_item_usage_end_date=pd.Timestamp("2026-11-02T01:00", tz="UTC"),
        identity_line_item_id="use-1",
        identity_time_interval="2026-11-02T00:00:00Z/2026-11-02T01:00:00Z",
    )
    root = write_export(tmp_path / "ids", [fee, usage], period="2026-11")
    window = _window(root, dt.date(2026, 11, 1), dt.date(2026, 11, 6))
    fees = window.events[window.events["charge_category"] == "Purchase"]
    assert len(fees) == 5 and fees["value"].sum() == pytest.approx(5.0, abs=1e-9)  # 5 of November's 30 days
    assert window.line_items == 2


def test_daily_partitions_of_a_month_add_up_to_its_fees_exactly(fee_export):
    """What 30 daily runs store: every day's share once, the month's unused fee and billed amount in full."""
    effective, billed = defaultdict(float), defaultdict(float)
    for d in range(30):
        day = dt.date(2026, 11, 1) + dt.timedelta(days=d)
        events = _window(fee_export, day, day + dt.timedelta(days=1)).events
        assert set(events["event_time"].dt.date) == {day}
        for _, e in events[events["charge_category"] == "Purchase"].iterrows():
            effective[e["aws_account_id"]] += e["value"]
            billed[e["aws_account_id"]] += e["billed_cost"]
    for account, unused in ACCOUNTS.items():
        assert effective[account] == pytest.approx(unused, abs=1e-9)
        assert billed[account] == 300.0


def test_a_legacy_csv_fee_names_its_reservation_and_spreads_alike(tmp_path):
    root = tmp_path / "legacy"
    frame = pd.DataFrame(
        {
            "identity/LineItemId": ["a", "b"],
            "lineItem/UsageStartDate": ["2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z"],
            "lineItem/UsageEndDate": ["2026-12-01T00:00:00Z", "2026-11-10T01:00:00Z"],
            "lineItem/UsageAccountId": ["111111111111", "111111111111"],
            "lineItem/LineItemType": ["RIFee", "Usage"],
            "lineItem/ProductCode": ["AmazonEC2", "AmazonEC2"],
            "lineItem/ResourceId": ["", "i-1"],
            "lineItem/UnblendedCost": ["300", "1.5"],
            "lineItem/CurrencyCode": ["USD", "USD"],
            "product/regionCode": ["us-east-1", "us-east-1"],
            "reservation/ReservationARN": ["arn:aws:ec2:us-east-1:111111111111:reserved-instances/ri-1", ""],
            "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": ["0", ""],
            "reservation/UnusedRecurringFee": ["45", ""],
        }
    )
    rel = "data/BILLING_PERIOD=2026-11/d/legacy-00001.csv.gz"
    (root / rel).parent.mkdir(parents=True)
    frame.to_csv(root / rel, index=False, compression="gzip")
    (root / "metadata/BILLING_PERIOD=2026-11").mkdir(parents=True)
    (root / "metadata/BILLING_PERIOD=2026-11/legacy-Manifest.json").write_text(json.dumps({"dataFiles": [rel]}))
    events = _window(root, dt.date(2026, 11, 10), dt.date(2026, 11, 11)).events.set_index("resource_name")
    assert events.loc["ri-1", "value"] == pytest.approx(1.5)  # 45 over 30 days
    assert events.loc["ri-1", "resource_type"] == "ec2:reserved-instances"
    assert events.loc["i-1", "value"] == pytest.approx(1.5)


def test_hourly_and_daily_fee_line_items_stay_on_their_day(tmp_path):
    """A Savings Plan's hourly fee (and a daily export's day-long one) crosses no midnight: nothing to spread."""
    sp = "arn:aws:savingsplans::123456789012:savingsplan/sp-1"
    rows = [
        row(
            line_item_usage_start_date=pd.Timestamp("2026-10-05 23:00", tz="UTC"),
            line_item_usage_end_date=pd.Timestamp("2026-10-06", tz="UTC"),
            line_item_line_item_type="SavingsPlanRecurringFee",
            line_item_resource_id=None,
            savings_plan_savings_plan_a_r_n=sp,
            line_item_unblended_cost=2.0,
            savings_plan_total_commitment_to_date=2.0,
            savings_plan_used_commitment=1.5,
        ),
        row(
            line_item_usage_start_date=pd.Timestamp("2026-10-05", tz="UTC"),
            line_item_usage_end_date=pd.Timestamp("2026-10-06", tz="UTC"),
            line_item_line_item_type="SavingsPlanRecurringFee",
            line_item_resource_id=sp,
            savings_plan_savings_plan_a_r_n=sp,
            line_item_unblended_cost=48.0,
            savings_plan_total_commitment_to_date=48.0,
            savings_plan_used_commitment=40.0,
        ),
    ]
    events = collect(write_export(tmp_path / "ex", rows))
    assert len(events) == 1 and events["resource_arn"][0] == sp
    assert events["value"][0] == pytest.approx(0.5 + 8.0)
    assert events["billed_cost"][0] == pytest.approx(50.0)
    assert "spread_over" not in property_dicts(events)[0]


def test_a_fee_with_a_broken_end_date_is_refused_naming_the_field(tmp_path):
    root = tmp_path / "legacy"
    frame = pd.DataFrame(
        {
            "lineItem/UsageStartDate": ["2026-10-01T00:00:00Z"],
            "lineItem/UsageEndDate": ["the first of next month"],
            "lineItem/UsageAccountId": ["111111111111"],
            "lineItem/LineItemType": ["RIFee"],
            "lineItem/ProductCode": ["AmazonEC2"],
            "lineItem/UnblendedCost": ["300"],
            "lineItem/CurrencyCode": ["USD"],
            "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": ["0"],
            "reservation/UnusedRecurringFee": ["45"],
        }
    )
    rel = "data/BILLING_PERIOD=2026-10/d/legacy-00001.csv"
    (root / rel).parent.mkdir(parents=True)
    frame.to_csv(root / rel, index=False)
    (root / "metadata/BILLING_PERIOD=2026-10").mkdir(parents=True)
    (root / "metadata/BILLING_PERIOD=2026-10/legacy-Manifest.json").write_text(json.dumps({"dataFiles": [rel]}))
    with pytest.raises(PoloInputError) as err:
        collect(root)
    assert err.value.field == "line_item_usage_end_date" and err.value.partition == "2026-10-05" and "legacy-00001.csv" in str(err.value)


# ------------------------------------------------------------ the days an export holds


def test_the_days_an_export_holds_come_from_its_manifests_in_both_layouts(exports, tmp_path):
    world, _, root = exports
    today = world.end
    first_period = (world.end - dt.timedelta(days=10)).replace(day=1)
    for fmt in ("cur2", "legacy_parquet"):
        assert cur.days_held(open_location(str(root / fmt)), EXPORT, today) == (first_period, today - dt.timedelta(days=1))
    assert cur.days_held(open_location(str(root / "cur2")), "another-export", today) is None
    older = write_export(tmp_path / "ex", [row()], period="2025-03")
    write_export(older, [row()], period="2025-04")
    assert cur.days_held(open_location(str(older)), "ex", dt.date(2026, 12, 2)) == (dt.date(2025, 3, 1), dt.date(2025, 4, 30))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="billing")
        for path in (root / "legacy_parquet").rglob("*"):
            if path.is_file():
                s3.put_object(Bucket="billing", Key=f"cur/{EXPORT}/{path.relative_to(root / 'legacy_parquet')}", Body=path.read_bytes())
        remote = open_location(f"s3://billing/cur/{EXPORT}", s3_client=s3)
        assert cur.days_held(remote, EXPORT, today) == (first_period, today - dt.timedelta(days=1))


def test_a_window_with_more_events_than_memory_holds_stops_with_a_message(tmp_path, monkeypatch):
    root = write_export(tmp_path / "ex", [row(line_item_resource_id=f"i-{n}") for n in range(20)])
    monkeypatch.setenv("POLO_MAX_EVENTS", "19")
    with pytest.raises(PoloInputError, match="more than 19 events .* a few days at a time") as info:
        collect(root)
    assert (info.value.field, info.value.partition) == ("events", "2026-10-05") and "EXPORT-00001.parquet" in info.value.source
    monkeypatch.setenv("POLO_MAX_EVENTS", "20")
    assert len(collect(root)) == 20
    monkeypatch.setenv("POLO_MAX_EVENTS", "lots")
    with pytest.raises(PoloInputError, match="positive whole number") as info:
        collect(root)
    assert info.value.field == "POLO_MAX_EVENTS"


def test_files_are_read_one_after_another_ids_checked_per_file_and_every_file_named(tmp_path):
    """The next file is fetched while the last one is normalised: a line item id is still unique per file (the same
    id in another file is another line item), a file with nothing in the window is still a source, and a file the
    manifest names but that is missing stops the window naming it."""
    item = {"identity_line_item_id": "d4lerpang7nfsmq3t3vy4uyincktg4sagjw3tvgcbsxeeh6exgs6", "identity_time_interval": "2026-10-05"}
    root = tmp_path / "EXP"
    names = ["EXPORT-00001.parquet", "EXPORT-00002.parquet", "EXPORT-00003.parquet"]
    write_export(root, [row(**item), row(line_item_resource_id="i-2")], name=names[0], row_group_size=1)
    write_export(root, [row(**item, line_item_unblended_cost=2.0)], name=names[1], row_group_size=1)
    write_export(root, [row(line_item_usage_start_date=pd.Timestamp("2026-10-20", tz="UTC"))], name=names[2])
    manifest = root / "metadata/BILLING_PERIOD=2026-10/EXP-Manifest.json"
    listed = [f"s3://b/p/EXP/data/BILLING_PERIOD=2026-10/d1/{n}" for n in names]
    manifest.write_text(json.dumps({"dataFiles": listed}))
    for batch_rows in (1, 1000):
        window = cur.collect(open_location(str(root)), "EXP", *DAY, batch_rows=batch_rows)
        assert window.events["value"].sum() == pytest.approx(4.0) and window.line_items == 3
        assert [s.rsplit("/", 1)[-1] for s in window.sources[1:]] == names
    manifest.write_text(json.dumps({"dataFiles": [*listed, listed[0].replace("00001", "00009")]}))
    with pytest.raises(PoloInputError, match="data file named by the manifest is missing") as info:
        cur.collect(open_location(str(root)), "EXP", *DAY)
    assert info.value.source.endswith("EXPORT-00009.parquet")
