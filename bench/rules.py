"""Rule evaluation figures for ``make bench``: the five default rules plus 200 generated ones over the delta
benchmark's 10M cost events (and 6,000 inventory resources), one full evaluation each run.

Usage: ``python -m bench.rules DSN [EVENTS]`` prints one JSON line.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import statistics
import sys
import time

from bench import delta as bench_delta
from polo_pipelines.rules import evaluate
from polo_pipelines.rules import ruleset as rules
from polo_pipelines.sources.aws.inventory import Observed, changes
from polo_pipelines.store import polo_store

NOW = dt.datetime.combine(bench_delta.END - dt.timedelta(days=1), dt.time(12, 0), tzinfo=dt.UTC)  # Sunday 23:00 Melbourne
INVENTORY = 6_000
RUNS = 3


def inventory(store) -> None:
    rng = random.Random(3)
    observed = []
    for i in range(INVENTORY):
        account = str(100000000000 + i % 3)
        env = rng.choice(["prod", "staging", "testing"])
        kind = rng.choice(["ec2:instance", "ec2:instance", "ec2:volume", "sagemaker:notebook-instance"])
        rid = f"inv-{i:06d}"
        props = {"tag:environment": env, "tag:customer": f"cust-{i % 20}"}
        if kind == "ec2:instance":
            props.update(state=rng.choice(["running", "stopped"]), instance_type="m5.large")
        elif kind == "ec2:volume":
            props.update(state="in-use", volume_type=rng.choice(["gp3", "gp3", "io1", "io2"]), size_gb=str(rng.choice([50, 500])))
        else:
            props.update(
                state=rng.choice(["InService", "Stopped"]),
                state_since=(NOW - dt.timedelta(hours=rng.randrange(1, 48))).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        arn = f"arn:aws:{kind.split(':')[0]}:us-east-1:{account}:{kind.split(':')[1]}/{rid}"
        observed.append(Observed(arn, kind, rid, account, "us-east-1", props))
    frame, _, _ = changes(observed, {}, NOW - dt.timedelta(minutes=5), set())
    store.insert_df("polo.resource_events", frame)


def generated(n: int = 200, seed: int = 5) -> list[rules.Rule]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        kind = i % 10
        rid = f"gen-{i:03d}"
        if kind < 3:  # a node's budget
            scope = rng.choice(
                [
                    {"hierarchy": "marqo_logical", "node": f"cluster:clu-{rng.randrange(200)}"},
                    {"hierarchy": "marqo_logical", "node": f"customer:cust-{rng.randrange(20)}"},
                    {"hierarchy": "marqo_logical", "node_type": "cluster"},
                    {"hierarchy": "aws_account", "node_type": "account"},
                ]
            )
            docs.append(
                {
                    "id": rid,
                    "type": "budget",
                    "scope": scope,
                    "condition": {"max_usd": rng.choice([500, 5_000, 50_000]), "period": rng.choice(["week", "month"])},
                }
            )
        elif kind == 3:  # a node's budget on a slice of its resources
            docs.append(
                {
                    "id": rid,
                    "type": "budget",
                    "scope": {"hierarchy": "marqo_logical", "node_type": "customer", "filters": {"resource_type": ["ec2:instance"]}},
                    "condition": {"max_usd": rng.choice([1_000, 10_000]), "period": "week"},
                }
            )
        elif kind == 4:  # each resource's daily budget
            docs.append(
                {
                    "id": rid,
                    "type": "budget",
                    "scope": {"filters": rng.choice([{"untagged": True}, {"tags": {"customer": [f"cust-{rng.randrange(20)}"]}}])},
                    "condition": {"max_usd": rng.choice([5, 10, 15]), "period": "day", "per": "resource"},
                }
            )
        elif kind == 5:  # a share of each node's cost
            docs.append(
                {
                    "id": rid,
                    "type": "ratio",
                    "scope": {"hierarchy": "marqo_logical", "node_type": rng.choice(["cluster", "customer"])},
                    "condition": {"numerator": {"tags": {"cluster": [f"clu-{rng.randrange(200)}"]}}, "max_ratio": 0.5, "period": "week"},
                }
            )
        elif kind in (6, 7):
            docs.append(
                {
                    "id": rid,
                    "type": "existence",
                    "scope": {"filters": {"environment": [rng.choice(["staging", "testing"])], "resource_type": ["ec2:instance"]}},
                    "condition": {"state": ["running"], "max_count": rng.choice([0, 100]), "outside_business_hours": True},
                }
            )
        elif kind == 8:
            docs.append(
                {
                    "id": rid,
                    "type": "config",
                    "scope": {"filters": {"environment": ["staging"]}},
                    "condition": {"property": "volume_type", "not_in": ["io1", "io2"]},
                }
            )
        else:
            docs.append(
                {
                    "id": rid,
                    "type": "lifecycle",
                    "scope": {"filters": {"resource_type": ["sagemaker:notebook-instance"]}},
                    "condition": {"state": ["InService"], "max_hours": rng.choice([8, 24])},
                }
            )
    return rules.parse({"rules": docs}, "generated rules")


def run(dsn: str, events: int = 10_000_000) -> dict:
    all_rules = rules.default_rules() + generated()
    with polo_store(dsn) as store:
        t = time.perf_counter()
        bench_delta.generate(store, events)
        inventory(store)
        built = bench_delta.build(store)
        setup_s = time.perf_counter() - t
        runs = []
        for _ in range(RUNS):
            t = time.perf_counter()
            result = evaluate.evaluate(store, all_rules, NOW)
            runs.append(
                {
                    "seconds": round(time.perf_counter() - t, 2),
                    "opened": result.opened,
                    "resolved": result.resolved,
                    "persisting": result.persisting,
                }
            )
        per_type: dict[str, list[float]] = {}
        for rule in all_rules:
            t = time.perf_counter()
            evaluate.breaches(store, rule, NOW)
            per_type.setdefault(rule.rule_type, []).append((time.perf_counter() - t) * 1000)
        counts = store.query_df("SELECT count() AS e FROM polo.resource_events")
    return {
        "events": int(counts["e"][0]),
        "rules": len(all_rules),
        "setup_s": round(setup_s, 1),
        "build": built,
        "runs": runs,
        "full_evaluation_s": statistics.median(r["seconds"] for r in runs),
        "per_rule_ms": {
            k: {"rules": len(v), "median": round(statistics.median(v), 1), "max": round(max(v), 1)} for k, v in sorted(per_type.items())
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000)))
