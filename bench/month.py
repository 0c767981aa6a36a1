"""A large organisation's month: CUR exports of 1M, 10M and 30M line items read, normalised and written, beside the
engine's own floor measured in the same run.

For each size the export is generated (not timed), then two fresh processes run one after the other: Polo's
collection of the month (``bench.run --phase``: read, normalise, write, with its peak memory) and the floor (the same
engine reading the same Parquet files with ``file()``, grouped per day, resource and line item type, inserted into a
MergeTree table). ``python -m bench.month`` prints the figures as JSON; ``--sizes`` picks the sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.memory import peak_rss_mib
from bench.run import EXPORT, MONTH, RESOURCES, make_export, timed_collection

SIZES = (1_000_000, 10_000_000, 30_000_000)
DATA_FILES = "data/*/*/*.parquet"  # an export's data files, below its root
FOCUS_SIZES = (1_000_000, 10_000_000)

FLOOR_TABLE = """
CREATE TABLE polo.bench_floor (
    day Date, resource_id String, line_item_type LowCardinality(String), account String,
    unblended Float64, effective Float64, list Float64, line_items UInt64
) ENGINE = MergeTree ORDER BY (day, resource_id)
"""
FLOOR_INSERT = """
INSERT INTO polo.bench_floor
SELECT toDate(line_item_usage_start_date) AS day, line_item_resource_id, line_item_line_item_type,
       any(line_item_usage_account_id), sum(line_item_unblended_cost),
       sum(coalesce(savings_plan_savings_plan_effective_cost, reservation_effective_cost, line_item_unblended_cost)),
       sum(pricing_public_on_demand_cost), count()
FROM file({files:String}, Parquet)
GROUP BY day, line_item_resource_id, line_item_line_item_type
"""

# The floor doing the reading Polo cannot skip, for reading the ratio (the goal stays against the floor above): each
# group's tags kept as well, and the month's line item ids checked for repeats.
FLOOR_WORK_TABLE = FLOOR_TABLE.replace("polo.bench_floor", "polo.bench_floor_work").replace(
    "line_items UInt64", "line_items UInt64, tags Map(String, String)"
)
FLOOR_WORK_INSERT = FLOOR_INSERT.replace("polo.bench_floor", "polo.bench_floor_work").replace(
    "count()\nFROM", "count(), any(resource_tags)\nFROM"
)
FLOOR_WORK_IDS = """
SELECT count() - uniqExact(cityHash64(identity_line_item_id, identity_time_interval)) AS repeats FROM file({files:String}, Parquet)
"""
# The engine grouping the line items as Polo's events need them (no tags): by every text an event's resource and first
# line item are made of, keeping every amount the amortisation rules read and each group's first line item (by file
# and row). The floor groups by three columns and sums four.
FLOOR_KEYS_TABLE = """
CREATE TABLE polo.bench_floor_keys (
    day Date, line_item_type LowCardinality(String), resource_id String, region String, account String, product String,
    unblended Float64, savings_plan Float64, reservation Float64, list Float64, line_items UInt64, first_row UInt64
) ENGINE = MergeTree ORDER BY (day, resource_id)
"""
FLOOR_KEYS_INSERT = """
INSERT INTO polo.bench_floor_keys
SELECT toDate(line_item_usage_start_date) AS day, line_item_line_item_type, line_item_resource_id, product_region_code,
       line_item_usage_account_id, line_item_product_code, sum(line_item_unblended_cost),
       sum(savings_plan_savings_plan_effective_cost), sum(reservation_effective_cost),
       sum(coalesce(pricing_public_on_demand_cost, line_item_unblended_cost)), count(),
       min(bitShiftLeft(toUInt64(indexOf({names:Array(String)}, _file)), 40) + _row_number)
FROM file({files:String}, Parquet)
GROUP BY day, line_item_line_item_type, line_item_resource_id, product_region_code, line_item_usage_account_id, line_item_product_code
"""


def make_focus(root: Path, rows: int, resources: int = RESOURCES) -> None:
    """A month of a FOCUS 1.0 export in Parquet (AWS and Google Cloud rows, hourly charge periods, tags as JSON text),
    written a file of 2.5M rows at a time."""
    files = max(1, -(-rows // 2_500_000))
    chunk = -(-rows // files)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        pq.write_table(
            _focus_rows(np.random.default_rng([11, n]), min(chunk, rows - n * chunk), resources),
            root / f"focus-{n + 1:03d}.parquet",
            row_group_size=64_000,
        )


def _focus_rows(rng: np.random.Generator, rows: int, resources: int) -> pa.Table:
    hours = (MONTH[1] - MONTH[0]).days * 24
    res = rng.integers(0, resources, rows)
    start = np.datetime64(MONTH[0], "h") + rng.integers(0, hours, rows).astype("timedelta64[h]")
    category = rng.choice(np.array(["Usage", "Purchase", "Tax", "Credit"]), rows, p=[0.95, 0.02, 0.02, 0.01])
    billed = np.round(rng.gamma(2.0, 0.05, rows), 6)
    billed = np.where(category == "Credit", -billed, billed)
    google = res % 5 == 0
    provider = np.where(google, "Google Cloud", "AWS")
    account = np.where(google, "proj-" + (res % 40).astype(str), np.char.zfill((100000000000 + res % 12).astype(str), 12))
    rid = np.where(
        google, "//compute.googleapis.com/projects/p/instances/vm-" + res.astype(str), np.char.add("i-", np.char.zfill(res.astype(str), 17))
    )
    rid = np.where(np.isin(category, ["Tax", "Credit"]), None, rid)
    customers = np.array(["acme", "beta", "gamma", "delta"])[res % 4]
    tags = np.char.add(np.char.add('{"customer": "', customers), '", "environment": "prod"}')
    ts = pa.array(start.astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC"))
    return pa.table(
        {
            "BilledCost": billed,
            "EffectiveCost": np.round(billed * 0.9, 6),
            "ListCost": np.abs(billed) * 1.2,
            "ContractedCost": billed,
            "BillingCurrency": np.full(rows, "USD"),
            "ChargePeriodStart": ts,
            "ChargePeriodEnd": pa.compute.add(ts, pa.scalar(3_600_000, type=pa.duration("ms"))),
            "ChargeCategory": category,
            "ChargeClass": pa.nulls(rows, type=pa.string()),
            "ProviderName": provider,
            "PublisherName": provider,
            "BillingAccountId": np.where(google, "01A2B3-C4D5E6-F7A8B9", "999999999999"),
            "SubAccountId": account,
            "ServiceName": np.where(google, "Compute Engine", "Amazon Elastic Compute Cloud"),
            "ServiceCategory": np.full(rows, "Compute"),
            "RegionId": np.where(google, "us-central1", "us-east-1"),
            "ResourceId": pa.array(rid, type=pa.string()),
            "ResourceName": pa.array(np.where(rid == None, None, "vm-" + res.astype(str)), type=pa.string()),  # noqa: E711
            "ResourceType": np.full(rows, "Virtual Machine"),
            "SkuId": np.full(rows, "SKU-1"),
            "Tags": tags,
            "x_RowId": rng.integers(0, 1 << 62, rows),  # a provider's own line id: no two rows alike
        }
    )


def floor(root: str, dsn: str) -> dict:
    """The engine alone, in this process: the month's Parquet files read, grouped and written, with peak memory; then,
    for reading the ratio, the engine grouping as Polo's events need, the engine doing the reading Polo cannot skip,
    and Polo's own reading of the files with nothing normalised."""
    from polo_pipelines.store import polo_store

    files = {"files": f"{root}/{DATA_FILES}"}
    with polo_store(dsn) as store:
        store.command("DROP TABLE IF EXISTS polo.bench_floor")
        store.command(FLOOR_TABLE)
        t = time.perf_counter()
        store.command(FLOOR_INSERT, files)
        seconds = time.perf_counter() - t
        rows, line_items = store.query_df("SELECT count() AS rows, sum(line_items) AS n FROM polo.bench_floor").iloc[0]
        floor_peak = peak_rss_mib()  # the floor's own, before the figures beside it
        store.command("DROP TABLE IF EXISTS polo.bench_floor_keys")
        store.command(FLOOR_KEYS_TABLE)
        t = time.perf_counter()
        store.command(FLOOR_KEYS_INSERT, {**files, "names": sorted(p.name for p in Path(root).glob(DATA_FILES))})
        keys_s = time.perf_counter() - t
        store.command("DROP TABLE IF EXISTS polo.bench_floor_work")
        store.command(FLOOR_WORK_TABLE)
        t = time.perf_counter()
        store.command(FLOOR_WORK_INSERT, files)
        tags_s = time.perf_counter() - t
        repeats = int(store.query_df(FLOOR_WORK_IDS, files)["repeats"][0])
        ids_s = time.perf_counter() - t - tags_s
    if repeats:
        raise RuntimeError(f"the generated export repeats {repeats} line item ids")
    read_s = polo_reading_alone(root)
    return {
        "total_s": round(seconds, 3),
        "rows": int(rows),
        "line_items": int(line_items),
        "peak_rss_mib": floor_peak,
        "polo_grouping_s": round(keys_s, 3),
        "with_tags_s": round(tags_s, 3),
        "id_check_s": round(ids_s, 3),
        "with_tags_and_ids_s": round(tags_s + ids_s, 3),
        "polo_read_only_s": round(read_s, 3),
    }


def polo_reading_alone(root: str) -> float:
    """Seconds Polo's reader spends on the month's files before any normalising: every batch of every file as the CUR
    reader reads it (its columns, text as dictionaries), nothing done with it."""
    from polo_pipelines.sources.aws import cur

    t = time.perf_counter()
    for path in sorted(Path(root).glob(DATA_FILES)):
        for _ in cur.file_batches(path, path.name, str(path), "bench", *MONTH):
            pass
    return time.perf_counter() - t


def focus_phase(root: str, dsn: str) -> dict:
    """Polo's collection of the FOCUS month, in this process: read + normalise, then write; with peak memory."""
    from polo_pipelines.sources.focus import export as focus
    from polo_pipelines.sources.locations import open_location

    window, figures = timed_collection(lambda: focus.collect(open_location(root), *MONTH), focus.COLLECTOR, dsn, *MONTH, root)
    return {"rows": window.rows, **figures}


# FOCUS against CUR: this many pairs, each a FOCUS collection and a CUR one of the same size run back to back, the
# ratio the median of the pairs' (the machine's speed drifts by more than the margin between the minutes apart).
FOCUS_PAIRS = 3


def _cur_phase(root: Path, store: str) -> dict:
    return _fresh("bench.run", "--phase", str(root), f"chdb://{store}", MONTH[0].isoformat(), MONTH[1].isoformat())


def _focus_beside_cur(tmp: Path, cur_root: Path, size: int, cur_first: dict) -> dict:
    """A FOCUS month of ``size`` rows collected FOCUS_PAIRS times, each beside a CUR collection of the same size (the
    first the CUR figure just measured, the others run again): the FOCUS figures are the pair with the median ratio's."""
    root = tmp / "focus"
    make_focus(root, size)
    pairs = []
    for n in range(FOCUS_PAIRS):
        cur = cur_first if n == 0 else _cur_phase(cur_root, f"{tmp}/cur-again-{n}")
        focus = _fresh("bench.month", "--focus-phase", str(root), f"chdb://{tmp}/focus-{n}")
        pairs.append((focus["total_s"] / cur["total_s"], focus, cur["total_s"]))
    ratio, focus, _ = sorted(pairs, key=lambda p: p[0])[len(pairs) // 2]
    return {
        "rows": size,
        "polo": focus,
        "vs_cur": round(ratio, 2),
        "pairs": [{"focus_s": f["total_s"], "cur_s": c, "ratio": round(r, 2)} for r, f, c in pairs],
    }


def _fresh(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(sizes: tuple[int, ...] = SIZES, focus_sizes: tuple[int, ...] = FOCUS_SIZES) -> dict:
    rows, focus_rows = [], []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="polo-bench-month-") as tmp:
            root = Path(tmp) / EXPORT
            t = time.perf_counter()
            make_export(root, line_items=size)
            generated = time.perf_counter() - t
            polo = _cur_phase(root, f"{tmp}/polo")
            engine = _fresh("bench.month", "--floor", str(root), f"chdb://{tmp}/floor")
            if size in focus_sizes:
                focus_rows.append(_focus_beside_cur(Path(tmp), root, size, polo))
        if engine["line_items"] != size:
            raise RuntimeError(f"the floor read {engine['line_items']:,} line items of {size:,}")
        rows.append(
            {
                "line_items": size,
                "generate_s": round(generated, 1),
                "polo": polo,
                "floor": engine,
                "ratio": round(polo["total_s"] / engine["total_s"], 2),
                "ratio_same_reading": round(polo["total_s"] / engine["with_tags_and_ids_s"], 2),
                "ratio_read_only": round(engine["polo_read_only_s"] / engine["total_s"], 2),
            }
        )
    for size in (s for s in focus_sizes if s not in sizes):  # no CUR month of that size to set it beside
        with tempfile.TemporaryDirectory(prefix="polo-bench-focus-") as tmp:
            make_focus(Path(tmp) / "focus", size)
            focus_rows.append(
                {"rows": size, "polo": _fresh("bench.month", "--focus-phase", f"{tmp}/focus", f"chdb://{tmp}/polo"), "vs_cur": None}
            )
    sizes_m = np.array([r["line_items"] / 1e6 for r in rows])
    slope = {}
    if len(rows) > 1:
        for name, values in (
            ("s_per_million", [r["polo"]["total_s"] for r in rows]),
            ("mib_per_million", [r["polo"]["peak_rss_mib"] for r in rows]),
        ):
            per, base = np.polyfit(sizes_m, np.array(values, dtype=float), 1)
            slope[name] = round(float(per), 3)
            slope[name.replace("per_million", "at_zero")] = round(float(base), 1)
        slope["at_100m_s"] = round(slope["s_at_zero"] + 100 * slope["s_per_million"], 1)
        slope["at_100m_mib"] = round(slope["mib_at_zero"] + 100 * slope["mib_per_million"], 1)
    return {"sizes": rows, "focus": focus_rows, "slope": slope, "target_peak_mib": 2048, "target_10m_s": 15.0, "target_ratio": 1.5}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.month")
    parser.add_argument("--floor", nargs=2, metavar=("ROOT", "DSN"), help=argparse.SUPPRESS)
    parser.add_argument("--focus-phase", nargs=2, metavar=("ROOT", "DSN"), help=argparse.SUPPRESS)
    parser.add_argument("--focus-sizes", default=",".join(str(s) for s in FOCUS_SIZES), help="FOCUS rows per month, comma-separated")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="line items per month, comma-separated")
    args = parser.parse_args()
    if args.floor:
        print(json.dumps(floor(*args.floor)))
        return 0
    if args.focus_phase:
        print(json.dumps(focus_phase(*args.focus_phase)))
        return 0
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    print(json.dumps(measure(sizes, tuple(int(s) for s in args.focus_sizes.split(",") if s))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
