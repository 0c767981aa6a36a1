"""``make bench``: Polo's performance figures on this machine, written to bench/results.md and bench/results.json.

Foundation figures (issue: 1,000,000 CUR line items read, normalised and written in <= 5 s with
peak memory <= 1.5 GiB; one day re-materialized in <= 2 s). Level 3 with activity (``bench_activity``: <= 5 ms on
10M cost, 55M metric and 5M config events) and a day of an organisation trail (``bench_cloudtrail``: 1M
records in <= 10 s, <= 1 GiB). The export is generated first and
not timed; each timed phase runs in a fresh process so its peak memory is its own. Also the
drill-down (``bench_delta``) and a year of the GitHub collector (``bench_github``: 300
repositories, 2,000 runs a day, <= 30 s) and the budget rules (``bench_rules``: 205 rules over the
10M events, <= 5 s). ``--parts`` measures some of them and keeps the others' last figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.memory import peak_rss_mib
from polo_pipelines.settings import PROJECT_ROOT

LINE_ITEMS = 1_000_000
RESOURCES = 10_000
PERIOD = "2026-10"
MONTH = (dt.date(2026, 10, 1), dt.date(2026, 11, 1))
EXPORT = "bench-export"
RUNS = 3


def make_export(root: Path, line_items: int = LINE_ITEMS, resources: int = RESOURCES, files: int | None = None) -> None:
    """A month of CUR 2.0 line items spread over resources, days and line item types, as an export with a manifest.

    Written a file at a time (``files``: 4, or one per 2.5M line items), so a month of any size is generated in the
    memory of one file."""
    files = files or max(4, -(-line_items // 2_500_000))
    chunk = -(-line_items // files)
    folder = f"data/BILLING_PERIOD={PERIOD}/bench-delivery"
    (root / folder).mkdir(parents=True, exist_ok=True)
    uris = []
    for n in range(files):
        rows = min(chunk, line_items - n * chunk)
        name = f"{EXPORT}-{n + 1:05d}.snappy.parquet"
        pq.write_table(_line_items(np.random.default_rng([7, n]), rows, resources), root / folder / name, row_group_size=64_000)
        uris.append(f"s3://bench/cur/{EXPORT}/{folder}/{name}")
    manifest = root / f"metadata/BILLING_PERIOD={PERIOD}/{EXPORT}-Manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"executionId": "bench", "dataFiles": uris}))


def _line_items(rng: np.random.Generator, line_items: int, resources: int) -> pa.Table:
    days = (MONTH[1] - MONTH[0]).days
    res = rng.integers(0, resources, line_items)
    day = rng.integers(0, days, line_items)
    kind = rng.choice(
        np.array(["Usage", "SavingsPlanCoveredUsage", "SavingsPlanNegation", "DiscountedUsage", "Tax", "Credit"]),
        line_items,
        p=[0.80, 0.08, 0.08, 0.03, 0.005, 0.005],
    )
    unblended = np.round(rng.gamma(2.0, 0.5, line_items), 6)
    unblended = np.where(kind == "SavingsPlanNegation", -unblended, unblended)
    unblended = np.where(kind == "Credit", -unblended, unblended)
    resource_ids = np.char.add("i-", np.char.zfill(res.astype(str), 17))
    resource_ids = np.where(np.isin(kind, ["Tax", "Credit"]), "", resource_ids)
    accounts = np.char.zfill((100000000000 + res % 12).astype(str), 12)
    starts = (np.datetime64(MONTH[0]) + day.astype("timedelta64[D]")).astype("datetime64[ms]")
    n_tags = 3
    customers = np.array(["acme", "beta", "gamma", "delta"])[res % 4]
    clusters = np.char.add(customers, np.char.add("-prod-", (res % 3).astype(str)))
    keys = np.tile(np.array(["user_customer", "user_cluster", "user_environment"]), line_items)
    values = np.empty(line_items * n_tags, dtype=object)
    values[0::3], values[1::3], values[2::3] = customers, clusters, "prod"
    offsets = pa.array(np.arange(0, line_items * n_tags + 1, n_tags, dtype=np.int32))
    tags = pa.MapArray.from_arrays(offsets, _flat(pa.array(keys, type=pa.string())), _flat(pa.array(values, type=pa.string())))
    return pa.table(
        {
            "line_item_usage_start_date": pa.array(starts, type=pa.timestamp("ms", tz="UTC")),
            "line_item_usage_account_id": accounts,
            "line_item_line_item_type": kind,
            "line_item_product_code": np.where(np.isin(kind, ["Tax", "Credit"]), "AWSSupport", "AmazonEC2"),
            "line_item_usage_type": np.full(line_items, "BoxUsage:m5.large"),
            "line_item_resource_id": resource_ids,
            "line_item_usage_amount": np.ones(line_items),
            "line_item_unblended_cost": unblended,
            "line_item_currency_code": np.full(line_items, "USD"),
            "product_region_code": np.full(line_items, "us-east-1"),
            "pricing_public_on_demand_cost": np.abs(unblended),
            "savings_plan_savings_plan_effective_cost": np.where(kind == "SavingsPlanCoveredUsage", unblended * 0.7, np.nan),
            "reservation_effective_cost": np.where(kind == "DiscountedUsage", unblended * 0.6, np.nan),
            "resource_tags": tags,
            # Every line item of a real export has an id (52 characters) unique within its hour: Polo checks them.
            "identity_line_item_id": _ids(rng, line_items),
            "identity_time_interval": _intervals(day),
        }
    )


def _ids(rng: np.random.Generator, n: int, width: int = 52) -> pa.Array:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
    data = letters[rng.integers(0, len(letters), n * width, dtype=np.uint8)]
    offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _intervals(day: np.ndarray) -> pa.Array:
    first = np.datetime64(MONTH[0])
    texts = [f"{first + d}T00:00:00Z/{first + d + 1}T00:00:00Z" for d in range((MONTH[1] - MONTH[0]).days)]
    return pa.array(texts, type=pa.string()).take(pa.array(day))


def _flat(array) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def phase(root: str, dsn: str, start: str, end: str) -> dict:
    """One timed collection of the CUR export, in this process: read + normalise, then write; with peak memory."""
    from polo_pipelines.sources.aws import cur
    from polo_pipelines.sources.locations import open_location

    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    window, figures = timed_collection(lambda: cur.collect(open_location(root), EXPORT, first, last), cur.COLLECTOR, dsn, first, last, root)
    return {"line_items": window.line_items, **figures}


def timed_collection(collect, collector: str, dsn: str, first: dt.date, last: dt.date, source: str) -> tuple:
    """``collect()`` timed (read + normalise), its events written for the days [first, last) (timed), with this
    process's peak memory: (the window, its figures)."""
    from polo_pipelines.store import polo_store
    from polo_pipelines.store.events import day_range, replace_days

    with polo_store(dsn):
        pass  # engine load and schema are set-up, not ingestion
    t0 = time.perf_counter()
    window = collect()
    t1 = time.perf_counter()
    with polo_store(dsn) as store:
        replace_days(store, window.events, collector=collector, days=day_range(first, last), source=source)
    t2 = time.perf_counter()
    figures = {
        "events": len(window.events),
        "read_normalise_s": round(t1 - t0, 3),
        "write_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3),
        "peak_rss_mib": peak_rss_mib(),
    }
    return window, figures


def _median(runs: list[dict]) -> dict:
    """The run with the median total time (all figures of one real run, not a blend)."""
    return sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]


def _module(module: str, *args: str, fresh_store: bool = False) -> dict:
    """Run ``python -m bench.<module> [<a fresh store's DSN>] args`` in a process of its own (its memory its own) and
    read the JSON figures it prints last."""
    with tempfile.TemporaryDirectory(prefix=f"polo-bench-{module}-") as tmp:
        dsn = [f"chdb://{Path(tmp) / 'clickhouse'}"] if fresh_store else []
        out = subprocess.run([sys.executable, "-m", f"bench.{module}", *dsn, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_phase(root: Path, dsn: str, start: dt.date, end: dt.date) -> dict:
    return _module("run", "--phase", str(root), dsn, start.isoformat(), end.isoformat())


def _run_delta(events: int) -> dict:
    return _module("delta", str(events), fresh_store=True)


def _run_github() -> dict:
    return _module("github", fresh_store=True)


def _run_cur() -> dict:
    with tempfile.TemporaryDirectory(prefix="polo-bench-") as tmp:
        root = Path(tmp) / EXPORT
        t = time.perf_counter()
        make_export(root)
        generate_s = time.perf_counter() - t
        dsn = f"chdb://{Path(tmp) / 'clickhouse'}"
        months = [_run_phase(root, f"{dsn}-{n}", *MONTH) for n in range(RUNS)]
        day = dt.date(2026, 10, 15)
        one_day = [_run_phase(root, f"{dsn}-0", day, day + dt.timedelta(days=1)) for _ in range(RUNS)]
    month = _median(months)
    best_day = _median(one_day)
    return {
        "cur_ingest_1m": {
            **month,
            "runs_s": [r["total_s"] for r in months],
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in months),
            "line_items_per_s": round(month["line_items"] / month["total_s"]),
            "target_s": 5.0,
            "target_peak_mib": 1536,
        },
        "cur_rematerialize_one_day": {**best_day, "runs_s": [r["total_s"] for r in one_day], "target_s": 2.0},
        "export_generation_s": round(generate_s, 2),
    }


def _run_activity(cost_events: int) -> dict:
    return _module("activity", str(cost_events), fresh_store=True)


def _run_cloudtrail() -> dict:
    return _module("cloudtrail")


def _run_web(events: int) -> dict:
    return _module("web", str(events))


def _run_otel() -> dict:
    return _module("otel")


def _run_month() -> dict:
    return _module("month")


def _run_rules() -> dict:
    return _module("rules", fresh_store=True)


PARTS = ("cur", "month", "delta", "github", "rules", "activity", "cloudtrail", "web", "otel")


def run(out_dir: Path, delta_events: int = 10_000_000, parts: tuple[str, ...] = PARTS) -> dict:
    """Measure ``parts`` and merge them into the figures already in ``out_dir`` (a part not measured keeps its last figures)."""
    path = out_dir / "results.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if "cur" in parts:
        figures.update(_run_cur())
    if "month" in parts:
        figures["month"] = _run_month()
    if "delta" in parts:
        figures["delta"] = _run_delta(delta_events)
    if "github" in parts:
        figures["github_year"] = _run_github()
    if "rules" in parts:
        figures["rules"] = _run_rules()
    if "activity" in parts:
        figures["activity"] = _run_activity(min(delta_events, 10_000_000))
    if "cloudtrail" in parts:
        figures["cloudtrail_day"] = _run_cloudtrail()
    if "web" in parts:
        figures["web"] = _run_web(min(delta_events, 10_000_000))
    if "otel" in parts:
        figures["otel"] = _run_otel()
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    (out_dir / "results.md").write_text(render(figures))
    return figures


def render(f: dict) -> str:
    """The figures as markdown; a part never measured into this folder has no section."""
    sections = [
        render_cur(f) if "cur_ingest_1m" in f else "",
        render_month(f["month"]) if "month" in f else "",
        render_delta(f["delta"]) if "delta" in f else "",
        render_github(f["github_year"]) if "github_year" in f else "",
        render_rules(f["rules"]) if "rules" in f else "",
        render_activity(f["activity"]) if "activity" in f else "",
        render_cloudtrail(f["cloudtrail_day"]) if "cloudtrail_day" in f else "",
        render_web(f["web"]) if "web" in f else "",
        render_otel(f["otel"]) if "otel" in f else "",
    ]
    return f"""# Polo benchmark figures

Written by `make bench` ({f["date"]}, {f["machine"]}). Embedded store (chdb).
""" + "".join(sections)


def render_cur(f: dict) -> str:
    m, d = f["cur_ingest_1m"], f["cur_rematerialize_one_day"]
    ok = lambda good: "met" if good else "NOT met"  # noqa: E731
    return f"""
## AWS CUR ingestion

Each phase runs in a fresh process, three times; the table shows the run with the median time. The export
(CUR 2.0 Parquet, 4 files, {m["line_items"]:,} line items over one month, 10,000 resources, resource tags as a
map column) is generated first and not timed.

| figure | value | target | |
|---|---|---|---|
| 1M line items read + normalised | {m["read_normalise_s"]} s | | |
| events written (31 days, swapped in as one month partition, rollups included) | {m["events"]:,} events in {m["write_s"]} s | | |
| **1M line items read, normalised and written** (runs: {", ".join(str(x) for x in m["runs_s"])} s) | **{m["total_s"]} s** | ≤ 5 s | {ok(m["total_s"] <= 5)} |
| line items per second | {m["line_items_per_s"]:,} | | |
| peak memory (RSS of the whole process, engine included; worst run) | {m["peak_rss_mib_max"]} MiB | ≤ 1,536 MiB | {ok(m["peak_rss_mib_max"] <= 1536)} |
| **re-materialize one day** (runs: {", ".join(str(x) for x in d["runs_s"])} s) | **{d["total_s"]} s** | ≤ 2 s | {ok(d["total_s"] <= 2)} |
"""


def _pairs(pairs: list[dict]) -> str:
    return ", ".join(f"{p['focus_s']} / {p['cur_s']} s" for p in pairs) or "–"


def render_month(m: dict) -> str:
    ok = lambda good: "met" if good else "NOT met"  # noqa: E731
    rows = "\n".join(
        f"| {r['line_items']:,} | {r['polo']['read_normalise_s']} s + {r['polo']['write_s']} s = **{r['polo']['total_s']} s** "
        f"| {r['polo']['events']:,} | **{r['polo']['peak_rss_mib']:,} MiB** | {r['floor']['total_s']} s / {r['floor']['peak_rss_mib']:,} MiB "
        f"| {r['ratio']}× | {r['floor'].get('polo_grouping_s', '–')} s | {r['floor'].get('with_tags_s', '–')} s + {r['floor'].get('id_check_s', '–')} s "
        f"= {r['floor'].get('with_tags_and_ids_s', '–')} s | {r.get('ratio_same_reading', '–')}× "
        f"| {r['floor'].get('polo_read_only_s', '–')} s | {r.get('ratio_read_only', '–')}× |"
        for r in m["sizes"]
    )
    peak = max(r["polo"]["peak_rss_mib"] for r in m["sizes"])
    ten = next((r for r in m["sizes"] if r["line_items"] == 10_000_000), None)
    s = m.get("slope", {})
    checks = [
        f"| peak memory of a month's load, every size | {peak:,} MiB | ≤ {m['target_peak_mib']:,} MiB | {ok(peak <= m['target_peak_mib'])} |"
    ]
    if ten:
        checks.append(
            f"| 10M line items read, normalised and written | {ten['polo']['total_s']} s | ≤ {m['target_10m_s']} s | {ok(ten['polo']['total_s'] <= m['target_10m_s'])} |"
        )
        checks.append(
            f"| the same, against the engine floor | {ten['ratio']}× | ≤ {m['target_ratio']}× | {ok(ten['ratio'] <= m['target_ratio'])} |"
        )
    focus = m.get("focus", [])
    focus_rows = "\n".join(
        f"| {r['rows']:,} | {r['polo']['read_normalise_s']} s + {r['polo']['write_s']} s = **{r['polo']['total_s']} s** "
        f"| {r['polo']['events']:,} | **{r['polo']['peak_rss_mib']:,} MiB** | {r['vs_cur'] if r['vs_cur'] is not None else '–'}× "
        f"| {_pairs(r.get('pairs', []))} |"
        for r in focus
    )
    focus_ten = next((r for r in focus if r["rows"] == 10_000_000 and r["vs_cur"] is not None), None)
    if focus_ten:
        checks.append(
            f"| a FOCUS export of 10M rows, against the CUR path's 10M | {focus_ten['vs_cur']}× | ≤ 1.5× | {ok(focus_ten['vs_cur'] <= 1.5)} |"
        )
        checks.append(
            f"| peak memory of the FOCUS month | {focus_ten['polo']['peak_rss_mib']:,} MiB | ≤ {m['target_peak_mib']:,} MiB "
            f"| {ok(focus_ten['polo']['peak_rss_mib'] <= m['target_peak_mib'])} |"
        )
    focus_table = (
        f"""
A FOCUS 1.0 export of the same month (Parquet, AWS and Google Cloud rows, hourly charge periods, tags as JSON text),
collected the same way, in pairs: each FOCUS collection run right after a CUR collection of the same size (the
first pair's CUR the one above), the ratio the median pair's, and its FOCUS figures shown:

| rows | Polo: read + normalise, write = total | events | Polo peak RSS | ÷ CUR at the same size | pairs (FOCUS / CUR) |
|---|---|---|---|---|---|
{focus_rows}
"""
        if focus
        else ""
    )
    slope = (
        f"Measured slope: {s['s_per_million']} s and {s['mib_per_million']} MiB per million line items "
        f"(intercepts {s['s_at_zero']} s, {s['mib_at_zero']:,} MiB); a 100M-line month extrapolates to {s['at_100m_s']} s "
        f"and {s['at_100m_mib']:,} MiB.\n"
        if s
        else ""
    )
    return f"""
## A large organisation's month (CUR 2.0 Parquet, 10,000 resources, 31 days)

Each size is generated (not timed), then collected by Polo in a fresh process (read in batches, normalised into the
month's events, written) and, in another fresh process, by the engine alone: the same files read with `file()`,
grouped per day, resource and line item type, inserted into a MergeTree table (the floor). Beside it, for reading the
ratio (the goal is against the floor): the engine grouping as Polo's events need (by the six texts an event's resource
and first line item are made of, every amount the amortisation rules read, each group's first line item by file and
row; no tags), inserted the same way; and the engine doing the reading Polo cannot skip: the floor's grouped insert
keeping each group's resource tags, plus the month's line item ids checked for repeats (`uniqExact` of the hash of id
and interval). Last, Polo's reading alone: every batch of
every file as its reader reads them (the columns it uses, text as dictionaries), nothing normalised or written, and
that against the floor: a path that reads the files through this reader cannot come nearer the floor than that.

| line items | Polo: read + normalise, write = total | events | Polo peak RSS | engine floor (time / peak RSS) | Polo ÷ floor | engine grouping as Polo needs | engine with tags + id check | Polo ÷ that | Polo's reading alone | ÷ floor |
|---|---|---|---|---|---|---|---|---|---|---|
{rows}

{slope}{focus_table}
| figure | value | target | |
|---|---|---|---|
{chr(10).join(checks)}
"""


def render_delta(x: dict) -> str:
    p, r, s, b, i = x["polo"], x["reference"], x["speedup"], x["build"], x["ingest_one_day"]
    runs = x.get("warm_runs", {"polo": 15, "reference": 5})
    big = x["events"] >= 100_000_000
    targets = (50, 50, 10) if big else (20, 20, 5)
    ok = lambda v, t: "met" if v <= t else "NOT met"  # noqa: E731
    return f"""
## Cost delta drill-down ({x["events"]:,} cost events, {x["resources"]:,} resources, one year, embedded store)

Median of warm runs (Polo: {runs["polo"]}, reference: {runs["reference"]}), last complete week against the week before. Each warm
run asks about a node or resource that no earlier run asked about (the engine, index and marks are
warm; the answer is not cached anywhere): Level 2 drills into {x.get("level2_nodes", x.get("level2_node"))}
({x["level2_node_resources"]} resources each); Level 3 reads one resource's events over both weeks, a
different resource each run. The reference is the product design's SQL (REFERENCE_QUERIES.md) with
the same dates and the same nodes and resources, over the raw events joined to the ancestry.

| level | Polo | target | | reference SQL | speed-up |
|---|---|---|---|---|---|
| 1: nodes ranked by delta | {p["level1_ms"]} ms | ≤ {targets[0]} ms | {ok(p["level1_ms"], targets[0])} | {r["level1_ms"]} ms | {s["level1_ms"]}× |
| 2: resources under a node (with type, name, creator) | {p["level2_ms"]} ms | ≤ {targets[1]} ms | {ok(p["level2_ms"], targets[1])} | {r["level2_ms"]} ms | {s["level2_ms"]}× |
| 3: one resource's events | {p["level3_ms"]} ms | ≤ {targets[2]} ms | {ok(p["level3_ms"], targets[2])} | {r["level3_ms"]} ms | {s["level3_ms"]}× |

Level 3 over the 13 weeks before the current end (four months' partitions, where the two weeks above read one):
{p.get("level3_90d_ms", "–")} ms; it has no target. The engine's floor in the same run (`SELECT 1` through the same
store): {p.get("select_1_ms", "–")} ms. The machine's
speed drifts by 15–30% from one minute to the next; read the levels against this figure.

Building the pre-aggregations from scratch (a year of history): resource rollup {b["resource_rollup_s"]} s,
ancestry {b["ancestry_s"]} s, node rollups {b["node_rollup_rebuild_s"]} s (both node rollups are rebuilt like
this whenever the ancestry or a resource's attributes change). The hierarchy and node-rollup assets run again
with nothing new (a run that brought nothing): the ancestry finds its events, loads and hierarchies as they were and
is kept, and so are the rollups: {b.get("ancestry_unchanged_s", "–")} s. Keeping them current with one collector day
({i["events"]:,} events): the collector's step (events and resource rollup through `replace_days`) takes
{i["replace_day_s"]} s, of which the resource rollup write is about {i["resource_rollup_write_s"]} s; the node-rollup
asset downstream refreshes that day in {i["node_rollup_refresh_s"]} s; together {i.get("collector_and_rollups_s", "–")} s.
{_full_month_day(x.get("ingest_full_month_day"))}{render_tables(x.get("tables", {}))}"""


def _full_month_day(f: dict | None) -> str:
    if not f:
        return ""
    return (
        f"That day has half a month beside it in its partition (the month so far); the last day of a complete month "
        f"({f['day']}, {f['events']:,} events) has the month's other {f['other_days_events']:,} events copied beside it "
        f"and takes {f['replace_day_s']} s through `replace_days`.\n"
    )


def render_tables(tables: dict) -> str:
    if not tables:
        return ""
    rows = "\n".join(f"| `{name}` | {t['rows']:,} | {t['mib']} MiB |" for name, t in sorted(tables.items()))
    return f"""
What the store holds for it:

| table | rows | on disk |
|---|---|---|
{rows}
"""


def render_github(g: dict) -> str:
    ok = "met" if g["total_s"] <= 30 else "NOT met"
    return f"""
## GitHub collector (a year: {g["repositories"]} repositories, {g["runs"]:,} workflow runs, {g["jobs"]:,} jobs)

The API's answers are generated first ({g["generate_s"]} s, not timed) and served from memory to the
collector's real code, so no time is spent waiting on the API.

| figure | value | target | |
|---|---|---|---|
| usage items + runs + jobs flattened, priced, reconciled into events | {g["events"]:,} events in {g["normalise_s"]} s | | |
| events written (365 days, 12 month partitions swapped in, rollups included) | {g["write_s"]} s | | |
| **a year normalised and written** | **{g["total_s"]} s** | ≤ 30 s | {ok} |
| days' totals against the billing report | off by ${g["reconciled_usd"]} | $0 | |
| peak memory (the generated payloads included) | {g["peak_rss_mib"]} MiB | | |
"""


def render_rules(r: dict) -> str:
    ok = "met" if r["full_evaluation_s"] <= 5 else "NOT met"
    runs = ", ".join(f"{x['seconds']} s ({x['opened']:,} opened, {x['persisting']:,} kept)" for x in r["runs"])
    per = "\n".join(f"| {k} | {v['rules']} | {v['median']} ms | {v['max']} ms |" for k, v in r["per_rule_ms"].items())
    return f"""
## Budget rules ({r["rules"]} rules: the 5 defaults and 200 generated; {r["events"]:,} events, 6,000 inventory resources)

| figure | value | target | |
|---|---|---|---|
| **a full evaluation** (median of 3; runs: {runs}) | **{r["full_evaluation_s"]} s** | ≤ 5 s | {ok} |

One rule on its own (no shared snapshots), by type:

| type | rules | median | max |
|---|---|---|---|
{per}
"""


def render_activity(a: dict) -> str:
    lv, ev = a["level3"], a["events"]
    ok = "met" if lv["story_ms"] <= 5 else "NOT met"
    return f"""
## Level 3 with activity ({ev.get("cost", 0):,} cost, {ev.get("metric", 0):,} metric, {ev.get("config", 0) + ev.get("lifecycle", 0):,} config and lifecycle events; {a["resources"]:,} resources, a year)

Median of {a["warm_runs"]} warm runs, a different resource each run. Level 3 is the resource's events over the week and the
week before, newest first (at most 50), and the explanation computed from all of them: one read by primary key
(`DrillDown.story`, what `polo delta --resource` runs). Store: {a["store_mib"]} MiB on disk; generated in {a["generate_s"]} s (not timed).

| figure | value | target | |
|---|---|---|---|
| **Level 3 with its explanation** | **{lv["story_ms"]} ms** | ≤ 5 ms | {ok} |
| the timeline alone (newest 50 by the same key) | {lv["timeline_only_ms"]} ms | | |
| the product design's Level 3 SQL (timeline only) | {lv["reference_level3_ms"]} ms | | |
| the engine's floor (`SELECT 1`) | {lv["select_1_ms"]} ms | | |

One of them: {a["one_story"]["events_in_window"]} events shown; "{a["one_story"]["explanation"]}".
"""


def render_cloudtrail(c: dict) -> str:
    ok = lambda good: "met" if good else "NOT met"  # noqa: E731
    return f"""
## A day of an organisation trail ({c["records"]:,} CloudTrail records, {c["files"]:,} files, {c["json_mib"]:,} MiB of JSON)

The delivery is generated first ({c["generate_s"]} s, not timed) in the documented layout and record shape: most calls
reads, some failed, many writes Level 3 has no use for; {c["events"]:,} events come out of it. Each run is a fresh
process: the collector's own read of the local folder, then the events written to a fresh embedded store.

| figure | value | target | |
|---|---|---|---|
| read, unpacked, parsed, mapped | {c["read_map_s"]} s | | |
| events written (`replace_days`) | {c["write_s"]} s | | |
| **a day read and written** (runs: {", ".join(str(x) for x in c["runs_s"])} s) | **{c["total_s"]} s** | ≤ 10 s | {ok(c["total_s"] <= 10)} |
| peak memory (RSS of the whole process, engine included; worst run) | {c["peak_rss_mib_max"]} MiB | ≤ 1,024 MiB | {ok(c["peak_rss_mib_max"] <= 1024)} |
| the floor: every file read, gunzipped and parsed, nothing else (same process) | {c["floor_parse_s"]} s | | {c["over_floor"]}× of it |
"""


def render_web(w: dict) -> str:
    h, pg, br, uw = w["http"], w["pages_html"], w["pages_browser"], w["under_writes"]
    ok = lambda v, t: "–" if v is None else "met" if v <= t else "NOT met"  # noqa: E731
    browser = "\n".join(
        f"| {name} page in Chromium (navigation start to load event) | {v} ms | ≤ 300 ms | {ok(v, 300)} |"
        for name, v in (("delta", br.get("delta_ms")), ("resources", br.get("resources_ms")))
        if v is not None
    )
    return f"""
## The HTTP API and the pages ({w["events"]:,} cost events, the drill-down bench's store)

`polo serve` in a process of its own; the client asks over keep-alive HTTP, a new node or resource each of
100 runs (medians). Every drill-down answer includes its periods' completeness. What only another process's
write can change (the completeness, the hierarchies held) is kept while the server's store session stays open.

| figure | value | target | |
|---|---|---|---|
| **Level 1** (`/api/v1/cost/delta?hierarchy=…`) | **{h["level1_ms"]} ms** | ≤ 30 ms | {ok(h["level1_ms"], 30)} |
| **Level 2** (`/api/v1/cost/delta/resources?nodeId=…`) | **{h["level2_ms"]} ms** | ≤ 30 ms | {ok(h["level2_ms"], 30)} |
| **Level 3** (`/api/v1/cost/delta/events?arn=…`, the explanation included) | **{h["level3_ms"]} ms** | ≤ 10 ms | {ok(h["level3_ms"], 10)} |
| the server's floor (`/openapi.json`, no store) | {h["openapi_ms"]} ms | | |
| dashboard page, whole HTML | {pg["dashboard_ms"]} ms | ≤ 300 ms | {ok(pg["dashboard_ms"], 300)} |
| delta page, whole HTML | {pg["delta_ms"]} ms | ≤ 300 ms | {ok(pg["delta_ms"], 300)} |
| a node's resources page, whole HTML | {pg["resources_ms"]} ms | ≤ 300 ms | {ok(pg["resources_ms"], 300)} |
| a resource's timeline page, whole HTML | {pg["resource_ms"]} ms | ≤ 300 ms | {ok(pg["resource_ms"], 300)} |
{browser}

**While another process writes** ({uw["seconds"]:.0f} s of a writer re-collecting day after day, {uw["days_written"]} days written,
each with the node rollups' refresh, one store session each as a collector step): {uw["requests"]} requests,
**{uw["failed"]} failed**; the longest wait {uw["longest_wait_ms"]} ms (a request that arrived while a day was being
written waits for that write), median {uw["median_ms"]} ms.
"""


def render_otel(o: dict) -> str:
    i, w = o["ingest"], o["window"]
    ok = lambda good: "met" if good else "NOT met"  # noqa: E731
    r = o.get("reconciliation")
    reconciled = (
        f"""
Then a day of {r["spans"]:,} spans on {r["hosts"]:,} hosts (generated in {r["generate_s"]} s; its 96 windows priced and
written as the 15-minute runs would, median {r["window_median_s"]} s a window of about {r["spans"] // 96:,} spans, the
longest {r["window_max_s"]} s; none of it timed) is reconciled to the hosts' bills for the day by the daily collector's
own code in a fresh process, three times: the day's lines read back, each bucket's span count compared with what its
lines were priced from (none priced again: {r["buckets_priced_again"]}), the bills read, every host rescaled with its
idle line, the day written.

| figure | value | target | |
|---|---|---|---|
| **a day reconciled: {r["hosts"]:,} hosts, {r["spans"] // 1_000_000}M spans** (runs: {", ".join(str(x) for x in r["runs_s"])} s) | **{r["seconds"]} s**, {r["lines"]:,} lines, {r["hosts_reconciled"]:,} hosts | ≤ 30 s | {ok(r["seconds"] <= 30)} |
| its peak RSS | {r["peak_rss_mib"]} MiB | | |
| services + idle against the bills | ${r["services_plus_idle_usd"]:,.6f} against ${r["billed_usd"]:,.6f} | equal to the cent | {ok(abs(r["services_plus_idle_usd"] - r["billed_usd"]) < 0.005)} |
"""
        if r
        else ""
    )
    return f"""
## OpenTelemetry spans

`polo otlp` in a process of its own receives {i["spans"]:,} spans (40 protobuf requests of 5,000, posted from 4 threads)
into the embedded store; then a 15-minute window of {w["spans"]:,} spans (generated in {w["generate_s"]} s, not timed) is
priced by the collector's own code and written as the 15-minute asset writes it, in a fresh process, three times.

| figure | value | target | |
|---|---|---|---|
| **OTLP/HTTP spans into the embedded store** | **{i["spans_per_s"]:,} spans/s** ({i["seconds"]} s) | ≥ 50,000 spans/s | {ok(i["spans_per_s"] >= 50_000)} |
| **a 15-minute window of 10M spans priced and written** (runs: {", ".join(str(x) for x in w["runs_s"])} s) | **{w["seconds"]} s**, {w["events"]:,} cost lines | ≤ 5 s | {ok(w["seconds"] <= 5)} |
| its peak RSS (worst run) | {w["peak_rss_mib_max"]} MiB | ≤ 2,048 MiB | {ok(w["peak_rss_mib_max"] <= 2048)} |
{reconciled}"""


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--phase", nargs=4, metavar=("ROOT", "DSN", "START", "END"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench")
    parser.add_argument(
        "--delta-events", type=int, default=10_000_000, help="cost events for the drill-down figures (100000000 for the large set)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts to measure (default: all of {', '.join(PARTS)})")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(*args.phase)))
        return 0
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}: choose from {', '.join(PARTS)}")
    figures = run(args.out, args.delta_events, parts)
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
