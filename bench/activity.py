"""Level 3 with activity for `make bench`: one resource's timeline and its explanation, on a store that also holds
a year of metrics and of config and lifecycle events for every resource.

The store holds the drill-down bench's 10M cost events (50,000 resources, a year), 3 metrics a day for each of
those resources over the year (54.75M metric events, as the CloudWatch collector writes them) and 100 config and
lifecycle events a resource (5M, as the CloudTrail collector writes them), generated in SQL (setup, not timed).
Each warm run asks Level 3 of a resource no earlier run asked about: its events over the week and the week before,
newest first, and the explanation computed from them (``DrillDown.story``, what ``polo delta --resource`` runs).
"""

from __future__ import annotations

import json
import sys
import time

from bench.delta import END, REFERENCE, RESOURCES, WARM_RUNS, _median_ms, generate
from polo_pipelines.drilldown import delta
from polo_pipelines.drilldown.service import DrillDown
from polo_pipelines.store import polo_store

START_SQL = f"toDate('{END}') - 364"
ARN_SQL = "concat('arn:aws:ec2:us-east-1:', toString(100000000000 + r % 3), ':instance/i-', leftPad(toString(r), 17, '0'))"
METRICS = (("CPUUtilization", "Percent"), ("NetworkOut", "Bytes"), ("NetworkIn", "Bytes"))
ACTIVITY_PER_RESOURCE = 100


def generate_metrics(store) -> int:
    """One value a day of each metric for every resource over the year: what the CloudWatch collector writes."""
    n = RESOURCES * 365 * len(METRICS)
    names = "[" + ", ".join(f"'{m}'" for m, _ in METRICS) + "]"
    units = "[" + ", ".join(f"'{u}'" for _, u in METRICS) + "]"
    store.command(
        f"""
        INSERT INTO polo.resource_events
            (resource_arn, resource_type, resource_name, event_time, event_type, event_action, value, billed_cost, list_cost,
             charge_category, service, provider, unit, properties, actor_name, collector, aws_account_id, aws_region)
        SELECT {ARN_SQL}, 'ec2:instance', concat('i-', leftPad(toString(r), 17, '0')),
            toDateTime64({START_SQL} + d, 3, 'UTC'), 'metric', {names}[m + 1],
            round((r % 89 + 1) * (1 + (d % 7) / 10) * if(m = 0, 1, 1e6), 3), 0, 0, '', '', 'AWS', {units}[m + 1],
            map('metric', {names}[m + 1], 'statistic', if(m = 0, 'Average', 'Sum')), '', 'metrics_aws',
            toString(100000000000 + r % 3), 'us-east-1'
        FROM (SELECT number % {RESOURCES} AS r, intDiv(number, {RESOURCES}) % 365 AS d, intDiv(number, {RESOURCES * 365}) AS m
              FROM numbers({n}))
        SETTINGS max_partitions_per_insert_block = 0
        """
    )
    return n


def generate_activity(store) -> int:
    """``ACTIVITY_PER_RESOURCE`` config and lifecycle events a resource, at hashed times over the year, with an actor
    and a summary: what the CloudTrail collector writes."""
    n = RESOURCES * ACTIVITY_PER_RESOURCE
    store.command(
        f"""
        INSERT INTO polo.resource_events
            (resource_arn, resource_type, resource_name, event_time, event_type, event_action, value, billed_cost, list_cost,
             charge_category, service, provider, unit, properties, actor_name, collector, aws_account_id, aws_region)
        SELECT {ARN_SQL}, 'ec2:instance', concat('i-', leftPad(toString(r), 17, '0')),
            toDateTime64({START_SQL}, 3, 'UTC') + toIntervalSecond(sipHash64(number) % (365 * 86400)),
            if(number % 10 = 0, 'lifecycle', 'config'), if(number % 10 = 0, 'started', 'ModifyInstanceAttribute'),
            0, 0, 0, '', '', 'AWS', '',
            map('summary', concat('instance type set to m5.', ['large', 'xlarge', '2xlarge'][number % 3 + 1]),
                'event_name', 'ModifyInstanceAttribute', 'role', 'deployer'),
            concat('user', toString(number % 40), '@example.com'), 'activity_aws', toString(100000000000 + r % 3), 'us-east-1'
        FROM (SELECT number, number % {RESOURCES} AS r FROM numbers({n}))
        SETTINGS max_partitions_per_insert_block = 0
        """
    )
    return n


def run(dsn: str, cost_events: int) -> dict:
    periods = delta.Periods.last_complete_week(END)
    with polo_store(dsn) as store:
        t = time.perf_counter()
        generate(store, cost_events)
        metric_events = generate_metrics(store)
        activity_events = generate_activity(store)
        store.command("OPTIMIZE TABLE polo.resource_events FINAL")  # a steady store is not merging a bulk load
        generate_s = time.perf_counter() - t
        service = DrillDown(store)
        # a different resource each run, spread over the 50,000
        arns = [
            f"arn:aws:ec2:us-east-1:{100000000000 + r % 3}:instance/i-{r:017d}" for r in range(7, RESOURCES, RESOURCES // (WARM_RUNS + 1))
        ][: WARM_RUNS + 1]
        window = {"start": periods.compare_start, "end": periods.current_end}
        level3 = {
            "story_ms": _median_ms(lambda i: service.story(arns[i], periods)),
            "timeline_only_ms": _median_ms(lambda i: service.timeline(arns[-1 - i], periods.compare_start, periods.current_end)),
            "reference_level3_ms": _median_ms(lambda i: store.query_df(REFERENCE["level3"], {"arn": arns[i], **window})),
            "select_1_ms": _median_ms(lambda i: store.query_df("SELECT 1")),
        }
        one = service.story(arns[1], periods)
        counts = store.query_df("SELECT event_type, count() AS n FROM polo.resource_events GROUP BY event_type ORDER BY event_type")
        size = store.query_df(
            "SELECT sum(bytes_on_disk) AS b FROM system.parts WHERE database = 'polo' AND table = 'resource_events' AND active"
        )
    return {
        "events": {r.event_type: int(r.n) for r in counts.itertuples()},
        "generated": {"cost": cost_events, "metric": metric_events, "activity": activity_events},
        "resources": RESOURCES,
        "generate_s": round(generate_s, 1),
        "store_mib": round(int(size["b"][0]) / 2**20, 1),
        "warm_runs": WARM_RUNS,
        "level3": level3,
        "one_story": {"events_in_window": len(one.events), "explanation": one.explanation.text},
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))
