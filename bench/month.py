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

from bench.memory import peak_rss_mib
from bench.run import EXPORT, MONTH, make_export

SIZES = (1_000_000, 10_000_000, 30_000_000)

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


def floor(root: str, dsn: str) -> dict:
    """The engine alone, in this process: the month's Parquet files read, grouped and written, with peak memory."""
    from polo_pipelines.store import polo_store

    with polo_store(dsn) as store:
        store.command("DROP TABLE IF EXISTS polo.bench_floor")
        store.command(FLOOR_TABLE)
        t = time.perf_counter()
        store.command(FLOOR_INSERT, {"files": f"{root}/data/*/*/*.parquet"})
        seconds = time.perf_counter() - t
        rows, line_items = store.query_df("SELECT count() AS rows, sum(line_items) AS n FROM polo.bench_floor").iloc[0]
    return {"total_s": round(seconds, 3), "rows": int(rows), "line_items": int(line_items), "peak_rss_mib": peak_rss_mib()}


def _fresh(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(sizes: tuple[int, ...] = SIZES) -> dict:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="polo-bench-month-") as tmp:
            root = Path(tmp) / EXPORT
            t = time.perf_counter()
            make_export(root, line_items=size)
            generated = time.perf_counter() - t
            polo = _fresh("bench.run", "--phase", str(root), f"chdb://{tmp}/polo", MONTH[0].isoformat(), MONTH[1].isoformat())
            engine = _fresh("bench.month", "--floor", str(root), f"chdb://{tmp}/floor")
        if engine["line_items"] != size:
            raise RuntimeError(f"the floor read {engine['line_items']:,} line items of {size:,}")
        rows.append(
            {
                "line_items": size,
                "generate_s": round(generated, 1),
                "polo": polo,
                "floor": engine,
                "ratio": round(polo["total_s"] / engine["total_s"], 2),
            }
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
    return {"sizes": rows, "slope": slope, "target_peak_mib": 2048, "target_10m_s": 15.0, "target_ratio": 1.5}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.month")
    parser.add_argument("--floor", nargs=2, metavar=("ROOT", "DSN"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="line items per month, comma-separated")
    args = parser.parse_args()
    if args.floor:
        print(json.dumps(floor(*args.floor)))
        return 0
    print(json.dumps(measure(tuple(int(s) for s in args.sizes.split(",")))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
