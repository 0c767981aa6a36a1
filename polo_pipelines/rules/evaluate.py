"""The rule evaluator: breaches now, and ``polo.rule_violations`` kept true.

A breach is identified by (rule, resource, node, kind): ``kind`` is ``breach`` or, for a
monthly node budget not yet over, ``projected`` (the month-to-date cost extrapolated to
the month's end passes the threshold). For each evaluated rule:

- a breach with no open violation of the same identity opens one (its id is derived from
  the identity and the opening time, so it is stable and never duplicated);
- an open violation whose breach is still there stays as it is (the latest actual value is
  recorded);
- an open violation whose breach is gone gets ``resolved_at``;
- a breach that returns after being resolved opens a new violation.

``rule_violations`` is a ReplacingMergeTree: an update is a new version of the row; readers
use FINAL. One evaluation runs at a time (the Dagster pool ``rules``).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field

import pandas as pd

from polo_pipelines.rules.ruleset import STATE, WINDOW_NODE_COSTS, CostTables, Rule, compile_rule, cost_window, window_costs
from polo_pipelines.store.versions import next_version

VIOLATION_COLUMNS = [
    "violation_id",
    "rule_id",
    "rule_name",
    "rule_type",
    "severity",
    "detected_at",
    "resolved_at",
    "resource_arn",
    "node_id",
    "actual_value",
    "threshold_value",
    "message",
    "notified",
    "notified_at",
    "acted",
    "acted_at",
    "_version",
]
NAMESPACE = uuid.UUID("5b1c3c64-4f0e-4d7b-9e35-2f1f7b6b9a10")


@dataclass
class Evaluation:
    at: dt.datetime
    rules: int = 0
    breaches: pd.DataFrame = field(default_factory=pd.DataFrame)
    opened: int = 0
    resolved: int = 0
    persisting: int = 0
    seconds: float = 0.0
    per_rule: dict[str, int] = field(default_factory=dict)


STATE_SNAPSHOT = "polo.rule_state_snapshot"
COST_SNAPSHOT = "polo.rule_window_costs"


def _memory_table(store, name: str, select: str, params: dict, made: list[str]) -> str:
    store.command(f"DROP TABLE IF EXISTS {name}")
    store.command(f"CREATE TABLE {name} ENGINE = Memory AS {select}", params)
    made.append(name)
    return name


def breaches(store, rule: Rule, now: dt.datetime, state_table: str | None = None, cost_tables=None) -> pd.DataFrame:
    """The rule's breaches now: resource_arn, node_id, actual_value, threshold_value, kind."""
    compiled = compile_rule(rule, now, state_table, cost_tables)
    frame = store.query_df(compiled.sql, compiled.params, columns=["resource_arn", "node_id", "actual_value", "threshold_value"])
    frame = frame[["resource_arn", "node_id", "actual_value", "threshold_value"]].assign(kind="breach")
    more = rule.type.more_breaches(store, rule, now, set(frame["node_id"])) if rule.type.more_breaches else None
    if more is not None:
        frame = pd.concat([frame, more], ignore_index=True)
    frame["actual_value"] = frame["actual_value"].astype("float64")
    return frame


def open_violations(store, rule_ids: list[str]) -> pd.DataFrame:
    return store.query_df(
        f"SELECT {', '.join(VIOLATION_COLUMNS)} FROM polo.rule_violations FINAL WHERE rule_id IN {{r:Array(String)}} AND resolved_at IS NULL",
        {"r": rule_ids},
    )


def message(rule: Rule, row) -> str:
    if row.kind == "projected":
        what = row.resource_arn or row.node_id
        return f"projected: {what} heads for ${row.actual_value:,.2f} this month, over ${row.threshold_value:,.2f} ({rule.name})"
    return rule.type.message(rule, row)


def evaluate(store, rules: list[Rule], now: dt.datetime | None = None) -> Evaluation:
    """Evaluate the enabled rules and bring their violations up to date."""
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    active = [r for r in rules if r.enabled]
    result = Evaluation(at=now, rules=len(active))
    if not active:
        return result
    found = []
    scratch: list[str] = []
    try:
        state_table = None
        if any(r.type.watches == "state" for r in active):
            # the inventory's latest state, read once for every state rule of this evaluation
            state_table = _memory_table(store, STATE_SNAPSHOT, STATE, {}, scratch)
        cost_tables = {}
        # days and times (a 15-minute budget) side by side: ordered by their text, which sorts each kind as it should
        windows = sorted({w for w in (cost_window(r, now) for r in active) if w is not None}, key=lambda w: tuple(map(str, w)))
        for i, (start, end, cats) in enumerate(windows):
            # each resource's cost over a window several rules share: their scans read 1 row per resource
            costs = _memory_table(
                store, f"{COST_SNAPSHOT}_{i}", window_costs(start), {"start": start, "end": end, "cats": list(cats)}, scratch
            )
            node_rules = [
                r
                for r in active
                if cost_window(r, now) == (start, end, cats)
                and (r.node_id or r.node_type)
                and r.condition.get("per", "node") == "node"
                and (r.filters or r.type.node_costs)
            ]
            nodes = (
                _memory_table(store, f"{COST_SNAPSHOT}_{i}_nodes", WINDOW_NODE_COSTS.replace("{costs}", costs), {}, scratch)
                if node_rules
                else None
            )
            cost_tables[(start, end, cats)] = CostTables(costs, nodes)
        for rule in active:
            frame = breaches(store, rule, now, state_table, cost_tables).assign(rule_id=rule.rule_id)
            result.per_rule[rule.rule_id] = len(frame)
            found.append(frame)
    finally:
        for table in scratch:
            store.command(f"DROP TABLE IF EXISTS {table}")
    current = pd.concat(found, ignore_index=True)
    result.breaches = current
    held = open_violations(store, [r.rule_id for r in active])
    held["kind"] = violation_kinds(held["message"])
    keys = ["rule_id", "resource_arn", "node_id", "kind"]
    # the keys as plain text on both sides: an empty side (a first evaluation, no hierarchy built yet) has no types
    current = current.astype(dict.fromkeys(keys, object))
    held = held.astype(dict.fromkeys(keys, object))
    merged = current.merge(held[[*keys, "violation_id"]], on=keys, how="outer", indicator=True)
    new = merged[merged["_merge"] == "left_only"]
    gone = held.merge(merged[merged["_merge"] == "right_only"][["violation_id"]], on="violation_id")
    result.opened, result.resolved, result.persisting = len(new), len(gone), int((merged["_merge"] == "both").sum())
    version = next_version(store, "polo.rule_violations")  # not ``now``: versions grow even evaluating "as of" an earlier time
    by_rule = {r.rule_id: r for r in active}
    rows = [
        {
            "violation_id": uuid.uuid5(NAMESPACE, f"{b.rule_id}|{b.resource_arn}|{b.node_id}|{b.kind}|{now.isoformat()}"),
            "rule_id": b.rule_id,
            "rule_name": by_rule[b.rule_id].name,
            "rule_type": by_rule[b.rule_id].rule_type,
            "severity": by_rule[b.rule_id].severity,
            "detected_at": now,
            "resolved_at": None,
            "resource_arn": b.resource_arn,
            "node_id": b.node_id,
            "actual_value": float(b.actual_value),
            "threshold_value": float(b.threshold_value),
            "message": message(by_rule[b.rule_id], b),
            "notified": False,
            "notified_at": None,
            "acted": False,
            "acted_at": None,
            "_version": version,
        }
        for b in new.itertuples(index=False)
    ]
    if len(gone):
        closed = gone[VIOLATION_COLUMNS].copy()
        closed["resolved_at"], closed["_version"] = now, version
        rows.extend(closed.to_dict("records"))
    if rows:
        write_violations(store, rows)
    result.seconds = time.perf_counter() - started
    return result


def write_violations(store, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows, columns=VIOLATION_COLUMNS)
    for name in ("detected_at", "resolved_at", "notified_at", "acted_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_localize(None)
    frame["violation_id"] = frame["violation_id"].astype(str)
    store.insert_df("polo.rule_violations", frame)


def violations(
    store,
    *,
    severity: list[str] | None = None,
    rule_type: list[str] | None = None,
    scope: str | None = None,
    state: str = "open",
    limit: int = 200,
) -> pd.DataFrame:
    """Violations for people: filter by severity, rule type, scope (a node: its own and its resources'), open/resolved/all."""
    conditions = ["1"]
    params: dict = {"limit": limit}
    if severity:
        conditions.append("severity IN {sev:Array(String)}")
        params["sev"] = severity
    if rule_type:
        conditions.append("rule_type IN {types:Array(String)}")
        params["types"] = rule_type
    if scope:
        conditions.append(
            "(node_id = {scope:String} OR resource_arn IN (SELECT resource_arn FROM polo.resource_ancestry WHERE ancestor_id = {scope:String}))"
        )
        params["scope"] = scope
    if state == "open":
        conditions.append("resolved_at IS NULL")
    elif state == "resolved":
        conditions.append("resolved_at IS NOT NULL")
    return store.query_df(
        f"""
        SELECT violation_id, rule_id, rule_type, severity, detected_at, resolved_at, resource_arn, node_id, actual_value,
               threshold_value, message, notified, acted
        FROM polo.rule_violations FINAL
        WHERE {" AND ".join(conditions)}
        ORDER BY detected_at DESC, rule_id, resource_arn, node_id
        LIMIT {{limit:UInt32}}
        """,
        params,
    )


def violation_kinds(messages: pd.Series) -> pd.Series:
    """Each stored violation's kind, read back from its message: ``projected`` (a month's projection) or ``breach``."""
    return pd.Series(["projected" if m.startswith("projected") else "breach" for m in messages], index=messages.index, dtype=object)


def compliance(store, hierarchy: str | None = None) -> pd.DataFrame:
    """Per hierarchy node: its resources, those with an open violation, its open violations (its resources' and its
    own, e.g. a budget), and the share compliant: resources without an open violation, plus the node itself when it
    has none of its own, out of resources + 1."""
    per_node = store.query_df(
        """
        SELECT a.hierarchy AS hierarchy, a.ancestor_id AS node_id, uniqExact(a.resource_arn) AS resources,
               uniqExactIf(a.resource_arn, v.n > 0) AS non_compliant, sum(v.n) AS resource_violations
        FROM polo.resource_ancestry AS a
        LEFT JOIN (
            SELECT resource_arn, count() AS n FROM polo.rule_violations FINAL
            WHERE resolved_at IS NULL AND resource_arn != '' GROUP BY resource_arn
        ) AS v ON v.resource_arn = a.resource_arn
        WHERE {h:String} = '' OR a.hierarchy = {h:String}
        GROUP BY a.hierarchy, a.ancestor_id
        """,
        {"h": hierarchy or ""},
    )
    own = store.query_df(
        "SELECT node_id, count() AS node_violations FROM polo.rule_violations FINAL WHERE resolved_at IS NULL AND node_id != '' GROUP BY node_id"
    )
    frame = per_node.merge(own, on="node_id", how="left").fillna({"node_violations": 0})
    frame["open_violations"] = (frame["resource_violations"] + frame["node_violations"]).astype(int)
    # the node itself is one more thing to comply (a budget or ratio breach is the node's, not a resource's)
    frame["compliance_pct"] = (
        100.0 * (frame["resources"] - frame["non_compliant"] + (frame["node_violations"] == 0)) / (frame["resources"] + 1)
    ).round(1)
    columns = ["hierarchy", "node_id", "resources", "non_compliant", "open_violations", "compliance_pct"]
    return frame.sort_values(["compliance_pct", "open_violations", "node_id"], ascending=[True, False, True])[columns].reset_index(
        drop=True
    )
