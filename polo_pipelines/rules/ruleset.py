"""Budget rules: the rule file (config/rules.yaml), its validation, the polo.budget_rules table, and compiling a rule
into the one parameterized query that returns its breaches.

What each type of rule means lives in its own module of ``polo_pipelines.rules.types``; this module
does what every type shares: the rule's id, name, scope (a hierarchy node or node type, and filters on
the resources), severity and channel, the file's round trip, the table's versions, and the query's
common part (which tables the rule's window and scope read). The five default rules live only in
config/rules.yaml; the schema migration seeds the table from that file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polo_pipelines.rules.sql import (  # noqa: F401  (the evaluator's and the tests' names, one import away)
    STATE,
    WINDOW_COSTS,
    WINDOW_NODE_COSTS,
    Compiled,
    CostTables,
    Window,
    context,
    node_expr,
    node_join,
    period_bounds,
    resource_set,
    window_costs,
)
from polo_pipelines.rules.types import TYPES
from polo_pipelines.rules.validate import BusinessHours, RuleError, allowed_keys, need, parse_filters, plain  # noqa: F401
from polo_pipelines.settings import PROJECT_ROOT
from polo_pipelines.store.versions import next_version
from polo_pipelines.validation import load_yaml

SEVERITIES = ("info", "warning", "critical")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
# A rule's action names a webhook whose URL is a setting (it may carry a token): never the URL itself.
ACTION = re.compile(r"^webhook:[a-z0-9][a-z0-9_-]{0,39}$")
DEFAULT_FILE = PROJECT_ROOT / "config" / "rules.yaml"


@dataclass(frozen=True)
class Rule:
    rule_id: str
    name: str
    rule_type: str
    hierarchy: str = ""
    node_id: str = ""
    node_type: str = ""
    filters: Mapping[str, Any] = field(default_factory=dict)
    condition: Mapping[str, Any] = field(default_factory=dict)
    severity: str = "warning"
    channel: str = ""
    action: str = ""  # webhook:<name>: called once per violation (POLO_ACTION_WEBHOOK_<NAME>), e.g. a throttle endpoint
    enabled: bool = True
    watches: str = ""
    created_by: str = ""

    @property
    def scope_label(self) -> str:
        if self.node_id:
            where = self.node_id
        elif self.node_type:
            where = f"every {self.node_type} ({self.hierarchy})"
        else:
            where = "all resources"
        shown = []
        for key, value in self.filters.items():
            if key == "tags":
                shown.extend(f"tag:{k}={'|'.join(v)}" for k, v in value.items())
            elif key == "untagged":
                shown.append("untagged" if value else "tagged")
            else:
                shown.append(f"{key}={'|'.join(value)}")
        return where + (f" where {', '.join(shown)}" if shown else "")

    @property
    def watched_asset(self) -> str:
        """The asset whose check reports this rule: the inventory for state rules, else the cost data of the scope."""
        if self.watches:
            return self.watches
        if self.type.watches == "state":
            return "aws_inventory_events"
        platform = self.node_id.split(":", 1)[1] if self.node_id.startswith("platform:") else ""
        if platform:
            return f"{platform}_cost_events"
        if self.hierarchy == "aws_account" or self.filters.get("collector") == "cost_aws":
            return "aws_cost_events"
        return "resource_ancestry"

    @property
    def type(self):
        """The rule's type (``polo_pipelines.rules.types``): what its condition means and how it is checked."""
        return TYPES[self.rule_type]

    @property
    def cadence(self) -> str:
        """'hourly' for cost rules, '15min' for state rules and budgets on 15 minutes (evaluated right after the
        spans' last 15 minutes are priced)."""
        return "15min" if self.condition.get("period") == "15min" else self.type.cadence

    def to_doc(self) -> dict[str, Any]:
        scope: dict[str, Any] = {}
        if self.hierarchy:
            scope["hierarchy"] = self.hierarchy
        if self.node_id:
            scope["node"] = self.node_id
        if self.node_type:
            scope["node_type"] = self.node_type
        if self.filters:
            scope["filters"] = dict(self.filters)
        doc: dict[str, Any] = {"id": self.rule_id, "name": self.name, "type": self.rule_type}
        if scope:
            doc["scope"] = scope
        doc["condition"] = plain(self.condition)
        doc["severity"] = self.severity
        if self.channel:
            doc["channel"] = self.channel
        if self.action:
            doc["action"] = self.action
        if not self.enabled:
            doc["enabled"] = False
        if self.watches:
            doc["watches"] = self.watches
        return doc


def parse_rule(doc: Any, where: str = "rule") -> Rule:
    need(isinstance(doc, Mapping), where, "a rule must be a mapping")
    allowed_keys(
        doc, {"id", "name", "type", "scope", "condition", "severity", "channel", "action", "enabled", "watches", "created_by"}, where
    )
    rule_id = doc.get("id")
    need(
        isinstance(rule_id, str) and bool(RULE_ID.match(rule_id)),
        where,
        f"id must be lower-case letters, digits, '-', '_' or '.', got {rule_id!r}",
    )
    where = f"rule {rule_id}"
    rule_type = doc.get("type")
    need(rule_type in TYPES, where, f"type must be one of {', '.join(TYPES)}, got {rule_type!r}")
    severity = doc.get("severity", "warning")
    need(severity in SEVERITIES, where, f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    name = doc.get("name") or rule_id
    need(isinstance(name, str), where, "name must be a string")
    scope = doc.get("scope") or {}
    need(isinstance(scope, Mapping), where, "scope must be a mapping")
    allowed_keys(scope, {"hierarchy", "node", "node_type", "filters"}, f"{where}.scope")
    hierarchy, node, node_type = str(scope.get("hierarchy") or ""), str(scope.get("node") or ""), str(scope.get("node_type") or "")
    need(not (node and node_type), where, "scope takes a node or a node_type, not both")
    need(not (node or node_type) or bool(hierarchy), where, "a scope node or node_type needs its hierarchy")
    need(not node or ":" in node, where, f"scope node must look like type:value, got {node!r}")
    filters = parse_filters(scope.get("filters") or {}, f"{where}.scope.filters")
    condition = dict(doc.get("condition") or {})
    allowed_keys(condition, set(TYPES[rule_type].condition_keys), f"{where}.condition")
    condition = TYPES[rule_type].parse_condition(condition, where, bool(node_type))
    channel = str(doc.get("channel") or "")
    problem = channel_problem(channel)
    need(problem is None, where, problem or "")
    action = str(doc.get("action") or "")
    need(
        not action or bool(ACTION.match(action)),
        where,
        f"action must be webhook:<name> (lower-case letters, digits, '-', '_'), got {action!r}",
    )
    enabled = doc.get("enabled", True)
    need(isinstance(enabled, bool), where, "enabled must be true or false")
    return Rule(
        rule_id=rule_id,
        name=name,
        rule_type=rule_type,
        hierarchy=hierarchy,
        node_id=node,
        node_type=node_type,
        filters=filters,
        condition=condition,
        severity=severity,
        channel=channel,
        action=action,
        enabled=enabled,
        watches=str(doc.get("watches") or ""),
        created_by=str(doc.get("created_by") or ""),
    )


def rules_file() -> Path:
    import os

    return Path(os.environ.get("POLO_RULES_FILE") or PROJECT_ROOT / "config" / "rules.yaml")


def parse(doc: Any, source: str = "rules file") -> list[Rule]:
    need(isinstance(doc, Mapping) and isinstance(doc.get("rules"), list), source, "needs a top-level 'rules:' list")
    allowed_keys(doc, {"rules"}, source)
    rules = [parse_rule(item, f"{source} rule #{i + 1}") for i, item in enumerate(doc["rules"])]
    seen: set[str] = set()
    for rule in rules:
        need(rule.rule_id not in seen, source, f"duplicate rule id {rule.rule_id!r}")
        seen.add(rule.rule_id)
    return rules


def load(path: Path | None = None) -> list[Rule]:
    path = path or rules_file()
    return parse(load_yaml(path, "rules file", RuleError), str(path))


def save(rules: list[Rule], path: Path | None = None) -> None:
    path = path or rules_file()
    header = "# Polo's budget rules (see polo_pipelines/rules/types/ for every type and condition). Edit, then `polo rules sync`.\n"
    path.write_text(header + yaml.safe_dump({"rules": [r.to_doc() for r in rules]}, sort_keys=False, allow_unicode=True))


def default_rules() -> list[Rule]:
    """The five default rules: config/rules.yaml as committed (the migration seeds polo.budget_rules from it)."""
    return load(DEFAULT_FILE)


# ------------------------------------------------------------ the table


def fingerprint(rule: Rule) -> str:
    return hashlib.sha256(json.dumps(rule.to_doc(), sort_keys=True).encode()).hexdigest()[:16]


# An address as a mail header may carry it: a local part and a dotted domain, nothing that could start another header.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def channel_problem(channel: str) -> str | None:
    """Why a rule's channel cannot be used, or None: ``slack``, ``email`` or ``email:<address>[,<address>...]``."""
    if channel in ("", "slack", "email"):
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in channel):
        return f"channel {channel!r} holds a control character (a line break would start a new mail header)"
    if channel.startswith("email:"):
        addresses = channel[len("email:") :].split(",")
        bad = [a for a in addresses if not _EMAIL.match(a.strip())]
        if bad:
            return f"channel {channel!r}: {bad[0].strip()!r} is not an email address"
        return None
    return f"channel must be slack, email or email:<address>, got {channel!r}"


def sync(store, rules: list[Rule], now: dt.datetime | None = None) -> dict[str, int]:
    """Make polo.budget_rules hold exactly these rules (new versions for changed ones; removed ones disabled)."""
    import pandas as pd

    now = now or dt.datetime.now(dt.UTC)
    held = stored(store)
    version = next_version(store, "polo.budget_rules")  # not ``now``: an evaluation "as of" an earlier time must still win
    rows, added, changed, removed = [], 0, 0, 0
    for rule in rules:
        old = held.get(rule.rule_id)
        if old is not None and fingerprint(old) == fingerprint(rule):
            continue
        added += old is None
        changed += old is not None
        rows.append(_row(rule, created=now if old is None else None, now=now, version=version))
    for rule_id, old in held.items():
        if rule_id not in {r.rule_id for r in rules} and old.enabled:
            removed += 1
            rows.append(_row(Rule(**{**old.__dict__, "enabled": False}), created=None, now=now, version=version))
    if rows:
        frame = pd.DataFrame(rows)
        frame["created_at"] = [c if c is not None else _created_at(store, rid) for rid, c in zip(frame["rule_id"], frame["created_at"])]
        store.insert_df("polo.budget_rules", frame)
    return {"added": added, "changed": changed, "disabled": removed}


def _created_at(store, rule_id: str):
    found = store.query_df("SELECT min(created_at) AS c FROM polo.budget_rules WHERE rule_id = {r:String}", {"r": rule_id})
    return found["c"][0]


def _row(rule: Rule, *, created, now: dt.datetime, version: int) -> dict[str, Any]:
    # Map columns, one JSON value per key: readable in SQL (condition['max_usd']) and revived exactly.
    scope = {f"filter:{k}": json.dumps(v, sort_keys=True) for k, v in plain(rule.filters).items()}
    scope.update({k: v for k, v in {"node_type": rule.node_type, "watches": rule.watches, "action": rule.action}.items() if v})
    return {
        "rule_id": rule.rule_id,
        "rule_name": rule.name,
        "rule_type": rule.rule_type,
        "scope_hierarchy": rule.hierarchy,
        "scope_node_id": rule.node_id,
        "scope_filters": scope,
        "condition": {k: json.dumps(v, sort_keys=True) for k, v in plain(rule.condition).items()},
        "severity": rule.severity,
        "notification_channel": rule.channel,
        "enabled": rule.enabled,
        "created_by": rule.created_by,
        "created_at": created,
        "updated_at": now,
        "_version": version,
    }


def stored(store) -> dict[str, Rule]:
    """The rules polo.budget_rules holds now (latest version of each)."""
    frame = store.query_df(
        """
        SELECT rule_id, rule_name, rule_type, scope_hierarchy, scope_node_id, scope_filters, condition, severity,
               notification_channel, enabled, created_by
        FROM polo.budget_rules FINAL ORDER BY rule_id
        """
    )
    out = {}
    for row in frame.itertuples(index=False):
        scope = dict(row.scope_filters)
        doc = {
            "id": row.rule_id,
            "name": row.rule_name,
            "type": row.rule_type,
            "scope": {
                k: v
                for k, v in {
                    "hierarchy": row.scope_hierarchy,
                    "node": row.scope_node_id,
                    "node_type": scope.get("node_type", ""),
                    "filters": {k[7:]: json.loads(v) for k, v in scope.items() if k.startswith("filter:")},
                }.items()
                if v
            },
            "condition": {k: json.loads(v) for k, v in dict(row.condition).items()},
            "severity": row.severity,
            "channel": row.notification_channel,
            "enabled": bool(row.enabled),
            "watches": scope.get("watches", ""),
            "action": scope.get("action", ""),
            "created_by": row.created_by,
        }
        out[row.rule_id] = parse_rule(doc)
    return out


# ------------------------------------------------------------ compiling


def cost_window(rule: Rule, now: dt.datetime) -> Window | None:
    """The (start, end, charge categories) a cost rule sums over; None for state rules."""
    return rule.type.window(rule, now) if rule.type.window else None


def compile_rule(
    rule: Rule, now: dt.datetime, state_table: str | None = None, cost_tables: Mapping[Window, CostTables] | None = None
) -> Compiled:
    """The rule as one parameterized query returning its breaches. ``state_table``: a snapshot of STATE to read;
    ``cost_tables``: per window, tables of each resource's (and each node's resources') cost over it; without
    them the daily rollup is summed. The common part is worked out once (``sql.context``); the type writes the query."""
    tables = (cost_tables or {}).get(cost_window(rule, now)) if rule.type.window else None
    return rule.type.compile(rule, now, context(rule, state_table, tables))
