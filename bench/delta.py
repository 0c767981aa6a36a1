"""Delta drill-down figures for `make bench`: Polo's three levels and the product design's reference SQL, same data.

A year of daily cost events for 50,000 resources in 20 customers, 200 clusters and 3 accounts
is generated in SQL (setup, not timed), the rollups and ancestry are built with Polo's own
functions (timed, reported as build cost), then each query runs warm; the median is reported.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time

from polo_pipelines.drilldown import delta
from polo_pipelines.drilldown.service import DrillDown
from polo_pipelines.hierarchy import ancestry as hierarchy
from polo_pipelines.hierarchy.rollup import rebuild_node_rollup, update_node_rollups
from polo_pipelines.store import polo_store
from polo_pipelines.store.events import day_range, fill_resource_rollup, properties_column, replace_days
from polo_pipelines.store.swap import atomic_load

END = dt.date(2026, 11, 16)  # a Monday: the last complete week is the one before
START = END - dt.timedelta(days=364)
RESOURCES = 50_000
WARM_RUNS = 100  # a different cluster (of 200) or resource each run; the median of 100 rides out the machine's jitter
REFERENCE_RUNS = 5

HIERARCHIES = hierarchy.parse(
    {
        "hierarchies": {
            "marqo_logical": {"levels": [{"type": "customer", "tag": "customer"}, {"type": "cluster", "tag": "cluster"}]},
            "aws_account": {"levels": [{"type": "account", "field": "aws_account_id"}]},
            "platform": {"levels": [{"type": "platform", "field": "platform"}]},
        }
    }
)


def generate(store, events: int) -> None:
    """``events`` cost events over the year: resource by hash, day by position, a week-on-week drift per cluster."""
    store.command(
        f"""
        INSERT INTO polo.resource_events
            (resource_arn, resource_type, resource_name, event_time, event_type, event_action, value, billed_cost, list_cost,
             charge_category, service, provider, unit, properties, actor_name, collector, aws_account_id, aws_region)
        SELECT
            concat('arn:aws:ec2:us-east-1:', toString(100000000000 + r % 3), ':instance/i-', leftPad(toString(r), 17, '0')) AS arn,
            'ec2:instance', concat('i-', leftPad(toString(r), 17, '0')),
            toDateTime64(toDate('{START}') + d, 3, 'UTC'), 'cost', 'usage',
            round(0.5 + (r % 97) / 10 + (d % 7) * ((r % 200) / 400), 6) AS v, v, v * 1.2,
            if(number % 101 = 0, 'Credit', 'Usage'), 'AmazonEC2', 'AWS', 'USD',
            map('tag:customer', concat('cust-', toString(r % 20)), 'tag:cluster', concat('clu-', toString(r % 200)),
                'instance_type', 'm5.large'),
            '', 'cost_aws', toString(100000000000 + r % 3), 'us-east-1'
        FROM (SELECT number, intHash32(number) % {RESOURCES} AS r, number % 365 AS d FROM numbers({events}))
        SETTINGS max_partitions_per_insert_block = 0
        """
    )


def build(store) -> dict:
    timings = {}
    t = time.perf_counter()
    fill_resource_rollup(store, "polo.resource_events", "polo.cost_resource_daily")
    timings["resource_rollup_s"] = time.perf_counter() - t
    t = time.perf_counter()
    assert hierarchy.refresh_if_changed(store, HIERARCHIES).action == "rebuilt"
    timings["ancestry_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rebuild_node_rollup(store)
    timings["node_rollup_rebuild_s"] = time.perf_counter() - t
    update_node_rollups(store)  # records what the rollups were computed from
    # What the hierarchy and node-rollup assets cost when a collector run brought nothing new (their usual case):
    # the ancestry finds its events, loads and hierarchies as they were, and the node rollups are kept.
    t = time.perf_counter()
    assert hierarchy.refresh_if_changed(store, HIERARCHIES).action == "unchanged"
    action, _ = update_node_rollups(store)
    timings["ancestry_unchanged_s"] = time.perf_counter() - t
    assert action == "0 loaded day(s) refreshed", action
    # Let the background merges of the bulk load finish: a steady store is not merging a year at once.
    for table in (
        "resource_events",
        "cost_resource_daily",
        "cost_node_daily",
        "cost_node_resource_daily",
        "resource_ancestry",
        "resources",
    ):
        store.command(f"OPTIMIZE TABLE polo.{table} FINAL")
    return {k: round(v, 2) for k, v in timings.items()}


REFERENCE = {
    "level1": """
WITH this_week AS (
  SELECT ra.ancestor_id, ra.ancestor_type, ra.hierarchy, sum(re.value) AS cost
  FROM polo.resource_events re JOIN polo.resource_ancestry ra ON re.resource_arn = ra.resource_arn
  WHERE re.event_type = 'cost' AND re.event_time >= {cs:Date} AND re.event_time < {ce:Date}
  GROUP BY ra.ancestor_id, ra.ancestor_type, ra.hierarchy),
last_week AS (
  SELECT ra.ancestor_id, ra.ancestor_type, ra.hierarchy, sum(re.value) AS cost
  FROM polo.resource_events re JOIN polo.resource_ancestry ra ON re.resource_arn = ra.resource_arn
  WHERE re.event_type = 'cost' AND re.event_time >= {ps:Date} AND re.event_time < {pe:Date}
  GROUP BY ra.ancestor_id, ra.ancestor_type, ra.hierarchy)
SELECT coalesce(t.ancestor_id, l.ancestor_id) AS node_id, coalesce(t.ancestor_type, l.ancestor_type) AS node_type,
  coalesce(l.cost, 0) AS last_week_cost, coalesce(t.cost, 0) AS this_week_cost,
  coalesce(t.cost, 0) - coalesce(l.cost, 0) AS delta, if(l.cost > 0, (t.cost - l.cost) / l.cost * 100, 999) AS pct_change
FROM this_week t FULL OUTER JOIN last_week l ON t.ancestor_id = l.ancestor_id AND t.hierarchy = l.hierarchy
WHERE abs(delta) > 1.0 ORDER BY abs(delta) DESC LIMIT 20""",
    "level2": """
WITH this_week AS (
  SELECT re.resource_arn, re.resource_type, re.resource_name, sum(re.value) AS cost
  FROM polo.resource_events re JOIN polo.resource_ancestry ra ON re.resource_arn = ra.resource_arn
  WHERE re.event_type = 'cost' AND re.event_time >= {cs:Date} AND re.event_time < {ce:Date} AND ra.ancestor_id = {node:String}
  GROUP BY re.resource_arn, re.resource_type, re.resource_name),
last_week AS (
  SELECT re.resource_arn, re.resource_type, re.resource_name, sum(re.value) AS cost
  FROM polo.resource_events re JOIN polo.resource_ancestry ra ON re.resource_arn = ra.resource_arn
  WHERE re.event_type = 'cost' AND re.event_time >= {ps:Date} AND re.event_time < {pe:Date} AND ra.ancestor_id = {node:String}
  GROUP BY re.resource_arn, re.resource_type, re.resource_name)
SELECT coalesce(t.resource_arn, l.resource_arn) AS resource_arn, coalesce(t.resource_type, l.resource_type) AS resource_type,
  coalesce(l.cost, 0) AS last_week, coalesce(t.cost, 0) AS this_week, coalesce(t.cost, 0) - coalesce(l.cost, 0) AS delta,
  multiIf(l.resource_arn IS NULL, 'new_resource', t.resource_arn IS NULL, 'terminated', 'cost_changed') AS change_type
FROM this_week t FULL OUTER JOIN last_week l ON t.resource_arn = l.resource_arn
WHERE abs(delta) > 0.50 ORDER BY abs(delta) DESC""",
    "level3": """
SELECT event_time, event_type, event_action, value, unit, properties, actor_name
FROM polo.resource_events
WHERE resource_arn = {arn:String} AND event_time >= {start:DateTime64} AND event_time < {end:DateTime64}
ORDER BY event_time DESC LIMIT 50""",
}


def _median_ms(fn, runs: int = WARM_RUNS) -> float:
    """Median time of ``fn(i)`` for runs i = 1..runs, after one warm-up call ``fn(0)``."""
    fn(0)
    samples = []
    for i in range(1, runs + 1):
        t = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(samples), 2)


def run(dsn: str, events: int) -> dict:
    periods = delta.Periods.last_complete_week(END)
    with polo_store(dsn) as store:
        service = DrillDown(store, HIERARCHIES)
        t = time.perf_counter()
        generate(store, events)
        generate_s = time.perf_counter() - t
        built = build(store)
        # Every warm run asks about a node or resource no earlier run asked about: the engine, its index and marks
        # are warm, the answer is not.
        nodes = [f"cluster:clu-{n}" for n in range(WARM_RUNS + 1)]
        arns = store.query_df(
            "SELECT resource_arn FROM polo.resource_ancestry WHERE ancestor_id = {n:String} ORDER BY resource_arn LIMIT {k:UInt32}",
            {"n": nodes[0], "k": WARM_RUNS + 1},
        )["resource_arn"].tolist()
        p = periods.params()
        window = {"start": periods.compare_start, "end": periods.current_end}
        polo = {
            # through the drill-down service, as the CLI, the weekly assets and the API ask
            "level1_ms": _median_ms(lambda i: service.nodes("marqo_logical", periods)),
            "level2_ms": _median_ms(lambda i: service.resources(nodes[i], periods, hierarchy="marqo_logical")),
            "level3_ms": _median_ms(lambda i: service.timeline(arns[i], periods.compare_start, periods.current_end)),
            # Level 3 over a quarter: a read that spans four months' partitions (each partition costs the read)
            "level3_90d_ms": _median_ms(
                lambda i: service.timeline(arns[i], periods.current_end - dt.timedelta(days=91), periods.current_end)
            ),
            # The engine's own floor in the same minutes, for reading the figures against a machine that drifts.
            "select_1_ms": _median_ms(lambda i: store.query_df("SELECT 1")),
        }
        reference = {
            "level1_ms": _median_ms(lambda i: store.query_df(REFERENCE["level1"], p), runs=REFERENCE_RUNS),
            "level2_ms": _median_ms(lambda i: store.query_df(REFERENCE["level2"], {**p, "node": nodes[i]}), runs=REFERENCE_RUNS),
            "level3_ms": _median_ms(lambda i: store.query_df(REFERENCE["level3"], {"arn": arns[i], **window}), runs=REFERENCE_RUNS),
        }
        under_node = int(
            store.query_df("SELECT count() AS n FROM polo.resource_ancestry WHERE ancestor_id = {n:String}", {"n": nodes[0]})["n"][0]
        )
        ingest = _ingest_cost(store, END - dt.timedelta(days=3))
        full_month_day = _ingest_full_month_day(store)
        counts = store.query_df("SELECT count() AS e, uniqExact(resource_arn) AS r FROM polo.resource_events")
        sizes = store.query_df(
            "SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts "
            "WHERE database = 'polo' AND active AND table IN ('resource_events', 'cost_resource_daily', 'cost_node_daily', 'cost_node_resource_daily') "
            "GROUP BY table"
        )
    return {
        "events": int(counts["e"][0]),
        "resources": int(counts["r"][0]),
        "generate_s": round(generate_s, 1),
        "build": built,
        "polo": polo,
        "reference": reference,
        "speedup": {k: round(reference[k] / polo[k], 1) for k in reference},
        "warm_runs": {"polo": WARM_RUNS, "reference": REFERENCE_RUNS},
        "level2_nodes": f"{nodes[1]} .. {nodes[-1]}",
        "level2_node_resources": under_node,
        "tables": {r.table: {"rows": int(r.rows), "mib": round(int(r.bytes) / 2**20, 1)} for r in sizes.itertuples()},
        "ingest_one_day": ingest,
        "ingest_full_month_day": full_month_day,
    }


def _replace_day(store, day: dt.date) -> tuple[int, float]:
    """One day's events re-collected through replace_days: (events, seconds)."""
    frame = store.query_df(
        "SELECT * EXCEPT (_loaded_at) FROM polo.resource_events WHERE collector = 'cost_aws' AND toDate(event_time) = {d:Date}", {"d": day}
    )
    # The day as a collector hands it over: its properties an Arrow map column (``cost_events`` builds them so), not
    # the Python dicts a read-back gives (converting those is this bench's set-up, not a collector day's cost).
    frame["properties"] = properties_column(frame["properties"])
    t = time.perf_counter()
    replace_days(store, frame, collector="cost_aws", days=day_range(day, day + dt.timedelta(days=1)), source="bench")
    return len(frame), time.perf_counter() - t


def _ingest_full_month_day(store) -> dict:
    """The last day of the last complete month re-collected: the month's partition is rebuilt with its other days
    copied, so this is a collector day at its dearest (the bench's other collector day has half a month beside it)."""
    day = END.replace(day=1) - dt.timedelta(days=1)
    kept = int(
        store.query_df(
            "SELECT count() AS n FROM polo.resource_events WHERE collector = 'cost_aws' AND toYYYYMM(event_time) = {m:UInt32} "
            "AND toDate(event_time) != {d:Date}",
            {"m": int(day.strftime("%Y%m")), "d": day},
        )["n"][0]
    )
    events, seconds = _replace_day(store, day)
    return {"day": day.isoformat(), "events": events, "other_days_events": kept, "replace_day_s": round(seconds, 3)}


def _ingest_cost(store, day: dt.date) -> dict:
    """Re-collect one day through replace_days, then bring the node rollups up to date downstream, each timed."""
    events, total = _replace_day(store, day)
    with atomic_load(store, "bench") as load:
        scratch = load.scratch("polo.cost_resource_daily")
        t = time.perf_counter()
        store.command(f"INSERT INTO {scratch} SELECT * FROM polo.cost_resource_daily WHERE day = {{d:Date}}", {"d": day})
        resource_rollup = time.perf_counter() - t
    t = time.perf_counter()
    action, _ = update_node_rollups(store)
    node_rollup = time.perf_counter() - t
    assert action == "1 loaded day(s) refreshed", action
    return {
        "events": events,
        "replace_day_s": round(total, 3),
        "collector_and_rollups_s": round(total + node_rollup, 3),
        "node_rollup_refresh_s": round(node_rollup, 3),
        "resource_rollup_write_s": round(resource_rollup, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))
