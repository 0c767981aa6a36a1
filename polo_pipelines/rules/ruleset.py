"""Budget rules as data: the rule file, its validation, and each rule compiled to parameterized ClickHouse SQL.

A rule names a scope (a hierarchy with one node, or every node of a type; optional
filters), a type-specific condition, a severity and a notification channel. Five types:

| type | breach | entity |
|---|---|---|
| budget | cost over a period (``day``, ``week``, ``month``) above ``max_usd`` | the node, or each resource (``per: resource``) |
| existence | resources in ``state`` (now, optionally only outside business hours) above ``max_count`` | each resource |
| config | a resource property outside ``in`` / not in ``not_in`` | each resource |
| lifecycle | a resource in ``state`` for longer than ``max_hours`` | each resource |
| ratio | matching cost / the node's cost above ``max_ratio`` over the last 1, 7 or 30 days | each node |

Compiling never puts a rule's value into SQL text: hierarchy, node, filter values, tag keys,
states and thresholds are all query parameters; only the fixed fragments chosen by the
rule's *type* and the *names* of known filters shape the statement. Every compiled query
returns ``resource_arn, node_id, actual_value, threshold_value`` (one row per breach).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from polo_pipelines.drilldown.periods import week_start
from polo_pipelines.settings import PROJECT_ROOT
from polo_pipelines.sources.aws.inventory import COLLECTOR as INVENTORY_COLLECTOR
from polo_pipelines.store.events import NON_USAGE_CATEGORIES
from polo_pipelines.validation import known_keys, load_yaml, require

TYPES = ("budget", "existence", "config", "lifecycle", "ratio")
SEVERITIES = ("info", "warning", "critical")
PERIODS = ("day", "week", "month")
FILTERS = ("resource_type", "service", "collector", "aws_account_id", "environment", "untagged", "tags")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


# Seeded by schema migration 5 and written to config/rules.yaml; edit the file to change them.
DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "id": "staging-off-hours",
        "name": "Staging off-hours: no running instances in staging or testing outside business hours",
        "type": "existence",
        "scope": {"filters": {"resource_type": ["ec2:instance"], "environment": ["staging", "testing"]}},
        "condition": {
            "state": ["running"],
            "max_count": 0,
            "outside_business_hours": {"timezone": "Australia/Melbourne", "days": "mon-fri", "start": "08:00", "end": "18:00"},
        },
        "severity": "warning",
        "channel": "slack",
    },
    {
        "id": "sagemaker-notebook-limit",
        "name": "No SageMaker notebook InService for more than 8 hours",
        "type": "lifecycle",
        "scope": {"filters": {"resource_type": ["sagemaker:notebook-instance"]}},
        "condition": {"state": ["InService"], "max_hours": 8},
        "severity": "warning",
        "channel": "slack",
    },
    {
        "id": "untagged-resource-cost",
        "name": "No untagged resource costing more than $1 a day",
        "type": "budget",
        "scope": {"filters": {"untagged": True, "collector": ["cost_aws", "cost_gcp"]}},
        "condition": {"max_usd": 1, "period": "day", "per": "resource"},
        "severity": "info",
        "channel": "email",
    },
    {
        "id": "testing-account-budget",
        "name": "Testing accounts total under $500 a month",
        "type": "budget",
        "scope": {"hierarchy": "aws_account", "node": "account:testing"},
        "condition": {"max_usd": 500, "period": "month"},
        "severity": "critical",
        "channel": "slack",
    },
    {
        "id": "nat-cost-ratio",
        "name": "NAT gateway cost under 15% of its cluster's total",
        "type": "ratio",
        "scope": {"hierarchy": "marqo_logical", "node_type": "cluster"},
        "condition": {"numerator": {"resource_type": ["ec2:natgateway"]}, "max_ratio": 0.15, "period": "week"},
        "severity": "warning",
        "channel": "slack",
    },
]


class RuleError(ValueError):
    """A rule that cannot be accepted, with where and why."""


@dataclass(frozen=True)
class BusinessHours:
    timezone: str = "Australia/Melbourne"
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(18, 0)

    def contains(self, moment: dt.datetime) -> bool:
        """Whether an aware moment falls in business hours in the rule's time zone (DST included)."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return local.weekday() in self.days and self.start <= local.time() < self.end


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
        if self.rule_type in ("existence", "config", "lifecycle"):
            return "aws_inventory_events"
        platform = self.node_id.split(":", 1)[1] if self.node_id.startswith("platform:") else ""
        if platform:
            return f"{platform}_cost_events"
        if self.hierarchy == "aws_account" or self.filters.get("collector") == "cost_aws":
            return "aws_cost_events"
        return "resource_ancestry"

    @property
    def cadence(self) -> str:
        """'hourly' for cost rules, '15min' for state rules."""
        return "hourly" if self.rule_type in ("budget", "ratio") else "15min"

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
        doc["condition"] = _plain(self.condition)
        doc["severity"] = self.severity
        if self.channel:
            doc["channel"] = self.channel
        if not self.enabled:
            doc["enabled"] = False
        if self.watches:
            doc["watches"] = self.watches
        return doc


def _plain(value: Any) -> Any:
    if isinstance(value, BusinessHours):
        names = {v: k for k, v in DAYS.items()}
        return {
            "timezone": value.timezone,
            "days": ",".join(names[d] for d in value.days),
            "start": _plain(value.start),
            "end": _plain(value.end),
        }
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return value


# ------------------------------------------------------------ parsing and validation


def _need(cond: bool, where: str, message: str) -> None:
    require(cond, where, message, RuleError)


def _keys(doc: Mapping, allowed: set[str], where: str) -> None:
    known_keys(doc, allowed, where, RuleError)


def _number(value: Any, where: str, name: str, minimum: float = 0.0) -> float:
    _need(isinstance(value, (int, float)) and not isinstance(value, bool), where, f"{name} must be a number, got {value!r}")
    _need(value >= minimum, where, f"{name} must be >= {minimum}, got {value}")
    return float(value)


def _strings(value: Any, where: str, name: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    _need(all(isinstance(v, str) and v for v in items) and items, where, f"{name} must be a non-empty string or list of strings")
    return list(items)


def _clock(value: Any, where: str, name: str) -> dt.time:
    try:
        return dt.time.fromisoformat(str(value))
    except ValueError:
        raise RuleError(f"{where}: {name} must be HH:MM, got {value!r}") from None


def parse_business_hours(doc: Any, where: str) -> BusinessHours:
    if doc is True:
        return BusinessHours()
    _need(isinstance(doc, Mapping), where, "business_hours must be true or a mapping")
    _keys(doc, {"timezone", "days", "start", "end"}, f"{where}.business_hours")
    zone = str(doc.get("timezone", "Australia/Melbourne"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"{where}: unknown time zone {zone!r}") from None
    days_text = str(doc.get("days", "mon-fri")).lower()
    days: list[int] = []
    for part in days_text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            _need(a in DAYS and b in DAYS, where, f"days must look like mon-fri or sat,sun, got {days_text!r}")
            days.extend(range(DAYS[a], DAYS[b] + 1))
        else:
            _need(part in DAYS, where, f"days must look like mon-fri or sat,sun, got {days_text!r}")
            days.append(DAYS[part])
    start, end = _clock(doc.get("start", "08:00"), where, "start"), _clock(doc.get("end", "18:00"), where, "end")
    _need(start < end, where, "business hours must start before they end")
    return BusinessHours(zone, tuple(sorted(set(days))), start, end)


def parse_filters(doc: Any, where: str) -> dict[str, Any]:
    _need(isinstance(doc, Mapping), where, "filters must be a mapping")
    filters = dict(doc)
    _keys(filters, set(FILTERS), where)
    for key, value in filters.items():
        if key == "untagged":
            _need(isinstance(value, bool), where, "filter untagged must be true or false")
        elif key == "tags":
            _need(
                isinstance(value, Mapping) and all(isinstance(k, str) and k for k in value),
                where,
                "filter tags must map tag keys to values",
            )
            filters[key] = {k: _strings(v, where, f"tags.{k}") for k, v in value.items()}
        else:
            filters[key] = _strings(value, where, f"filter {key}")
    return filters


CONDITION_KEYS = {
    "budget": {"max_usd", "period", "per", "include_credits", "warn_projected"},
    "existence": {"state", "max_count", "outside_business_hours"},
    "config": {"property", "in", "not_in"},
    "lifecycle": {"state", "max_hours"},
    "ratio": {"numerator", "max_ratio", "period"},
}


def parse_rule(doc: Any, where: str = "rule") -> Rule:
    _need(isinstance(doc, Mapping), where, "a rule must be a mapping")
    _keys(doc, {"id", "name", "type", "scope", "condition", "severity", "channel", "enabled", "watches", "created_by"}, where)
    rule_id = doc.get("id")
    _need(
        isinstance(rule_id, str) and bool(RULE_ID.match(rule_id)),
        where,
        f"id must be lower-case letters, digits, '-', '_' or '.', got {rule_id!r}",
    )
    where = f"rule {rule_id}"
    rule_type = doc.get("type")
    _need(rule_type in TYPES, where, f"type must be one of {', '.join(TYPES)}, got {rule_type!r}")
    severity = doc.get("severity", "warning")
    _need(severity in SEVERITIES, where, f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    name = doc.get("name") or rule_id
    _need(isinstance(name, str), where, "name must be a string")
    scope = doc.get("scope") or {}
    _need(isinstance(scope, Mapping), where, "scope must be a mapping")
    _keys(scope, {"hierarchy", "node", "node_type", "filters"}, f"{where}.scope")
    hierarchy, node, node_type = str(scope.get("hierarchy") or ""), str(scope.get("node") or ""), str(scope.get("node_type") or "")
    _need(not (node and node_type), where, "scope takes a node or a node_type, not both")
    _need(not (node or node_type) or bool(hierarchy), where, "a scope node or node_type needs its hierarchy")
    _need(not node or ":" in node, where, f"scope node must look like type:value, got {node!r}")
    filters = parse_filters(scope.get("filters") or {}, f"{where}.scope.filters")
    condition = dict(doc.get("condition") or {})
    _keys(condition, CONDITION_KEYS[rule_type], f"{where}.condition")
    condition = _parse_condition(rule_type, condition, where, bool(node_type))
    channel = str(doc.get("channel") or "")
    _need(
        channel == "" or channel in ("slack", "email") or channel.startswith(("slack:", "email:")),
        where,
        "channel must be slack, email, slack:<webhook setting> or email:<address>",
    )
    enabled = doc.get("enabled", True)
    _need(isinstance(enabled, bool), where, "enabled must be true or false")
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
        enabled=enabled,
        watches=str(doc.get("watches") or ""),
        created_by=str(doc.get("created_by") or ""),
    )


def _parse_condition(rule_type: str, c: dict[str, Any], where: str, per_node_type: bool) -> dict[str, Any]:
    if rule_type == "budget":
        _need("max_usd" in c, where, "a budget rule needs condition.max_usd")
        out = {"max_usd": _number(c["max_usd"], where, "max_usd"), "period": c.get("period", "month"), "per": c.get("per", "node")}
        _need(out["period"] in PERIODS, where, f"period must be one of {', '.join(PERIODS)}")
        _need(out["per"] in ("node", "resource"), where, "per must be node or resource")
        out["include_credits"] = bool(c.get("include_credits", False))
        out["warn_projected"] = bool(c.get("warn_projected", out["period"] == "month" and out["per"] == "node"))
        return out
    if rule_type == "existence":
        _need("state" in c, where, "an existence rule needs condition.state")
        out = {"state": _strings(c["state"], where, "state"), "max_count": int(_number(c.get("max_count", 0), where, "max_count"))}
        if c.get("outside_business_hours"):
            out["outside_business_hours"] = parse_business_hours(c["outside_business_hours"], where)
        return out
    if rule_type == "config":
        _need(isinstance(c.get("property"), str) and c["property"], where, "a config rule needs condition.property")
        _need(("in" in c) != ("not_in" in c), where, "a config rule needs exactly one of condition.in / condition.not_in")
        key = "in" if "in" in c else "not_in"
        return {"property": c["property"], key: _strings(c[key], where, key)}
    if rule_type == "lifecycle":
        _need("state" in c and "max_hours" in c, where, "a lifecycle rule needs condition.state and condition.max_hours")
        return {"state": _strings(c["state"], where, "state"), "max_hours": _number(c["max_hours"], where, "max_hours")}
    numerator = c.get("numerator")
    _need(isinstance(numerator, Mapping) and bool(numerator), where, "a ratio rule needs condition.numerator (filters for the part)")
    out = {
        "numerator": parse_filters(numerator, f"{where}.condition.numerator"),
        "max_ratio": _number(c.get("max_ratio"), where, "max_ratio"),
        "period": c.get("period", "week"),
    }
    _need(out["max_ratio"] <= 1, where, "max_ratio is a fraction (0.15 for 15%)")
    _need(out["period"] in PERIODS, where, f"period must be one of {', '.join(PERIODS)}")
    return out


def rules_file() -> Path:
    import os

    return Path(os.environ.get("POLO_RULES_FILE") or PROJECT_ROOT / "config" / "rules.yaml")


def parse(doc: Any, source: str = "rules file") -> list[Rule]:
    _need(isinstance(doc, Mapping) and isinstance(doc.get("rules"), list), source, "needs a top-level 'rules:' list")
    _keys(doc, {"rules"}, source)
    rules = [parse_rule(item, f"{source} rule #{i + 1}") for i, item in enumerate(doc["rules"])]
    seen: set[str] = set()
    for rule in rules:
        _need(rule.rule_id not in seen, source, f"duplicate rule id {rule.rule_id!r}")
        seen.add(rule.rule_id)
    return rules


def load(path: Path | None = None) -> list[Rule]:
    path = path or rules_file()
    return parse(load_yaml(path, "rules file", RuleError), str(path))


def save(rules: list[Rule], path: Path | None = None) -> None:
    path = path or rules_file()
    header = "# Polo's budget rules (see polo_pipelines/rules.py for every type and condition). Edit, then `polo rules sync`.\n"
    path.write_text(header + yaml.safe_dump({"rules": [r.to_doc() for r in rules]}, sort_keys=False, allow_unicode=True))


# ------------------------------------------------------------ the table


def fingerprint(rule: Rule) -> str:
    return hashlib.sha256(json.dumps(rule.to_doc(), sort_keys=True).encode()).hexdigest()[:16]


def sync(store, rules: list[Rule], now: dt.datetime | None = None) -> dict[str, int]:
    """Make polo.budget_rules hold exactly these rules (new versions for changed ones; removed ones disabled)."""
    import pandas as pd

    now = now or dt.datetime.now(dt.UTC)
    held = stored(store)
    version = time.time_ns()  # wall clock, not ``now``: an evaluation "as of" an earlier time must still win
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
    scope = {f"filter:{k}": json.dumps(v, sort_keys=True) for k, v in _plain(rule.filters).items()}
    scope.update({k: v for k, v in {"node_type": rule.node_type, "watches": rule.watches}.items() if v})
    return {
        "rule_id": rule.rule_id,
        "rule_name": rule.name,
        "rule_type": rule.rule_type,
        "scope_hierarchy": rule.hierarchy,
        "scope_node_id": rule.node_id,
        "scope_filters": scope,
        "condition": {k: json.dumps(v, sort_keys=True) for k, v in _plain(rule.condition).items()},
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
            "created_by": row.created_by,
        }
        out[row.rule_id] = parse_rule(doc)
    return out


# ------------------------------------------------------------ compiling


@dataclass(frozen=True)
class Compiled:
    sql: str
    params: dict[str, Any]


def period_bounds(period: str, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """[start, end): 'day' is the last complete UTC day (costs arrive a day late); 'week' and 'month' run from the
    start of the ISO week or month containing ``now`` through today."""
    today = now.astimezone(dt.UTC).date()
    if period == "day":
        return today - dt.timedelta(days=1), today
    if period == "week":
        start = week_start(today)
    else:
        start = today.replace(day=1)
    return start, today + dt.timedelta(days=1)


def trailing_bounds(period: str, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """[start, end): the last 1, 7 or 30 complete UTC days, for ratios (a proportion has no calendar reset)."""
    today = now.astimezone(dt.UTC).date()
    return today - dt.timedelta(days={"day": 1, "week": 7, "month": 30}[period]), today


def _filters_sql(filters: Mapping[str, Any], prefix: str, params: dict[str, Any], column: str = "r") -> list[str]:
    """Conditions on the resources dimension (alias ``column``) for the rule's filters; values become parameters."""
    out = []
    for key, value in filters.items():
        name = f"{prefix}_{key}"
        if key in ("resource_type", "service", "collector", "aws_account_id"):
            params[name] = list(value)
            out.append(f"{column}.{key} IN {{{name}:Array(String)}}")
        elif key == "environment":
            params[name] = list(value)
            out.append(f"{column}.tags['tag:environment'] IN {{{name}:Array(String)}}")
        elif key == "untagged":
            # untagged: a taggable resource (not a service-level line, which no tag can reach) with no tag at all
            untagged = (
                f"(length(mapFilter((k, v) -> startsWith(k, 'tag:') AND v != '', {column}.tags)) = 0"
                f" AND {column}.resource_type NOT IN ('aws:service', 'aws:unknown', 'service', 'product', 'plan'))"
            )
            out.append(untagged if value else f"NOT {untagged}")
        elif key == "tags":
            for i, (tag, values) in enumerate(sorted(value.items())):
                params[f"{name}_k{i}"], params[f"{name}_v{i}"] = f"tag:{tag}", list(values)
                out.append(f"{column}.tags[{{{name}_k{i}:String}}] IN {{{name}_v{i}:Array(String)}}")
    return out


def _scope_sql(rule: Rule, params: dict[str, Any], arn_column: str = "resource_arn") -> str:
    if rule.node_id:
        params["scope_h"], params["scope_node"] = rule.hierarchy, rule.node_id
        return f"{arn_column} IN (SELECT resource_arn FROM polo.resource_ancestry WHERE hierarchy = {{scope_h:String}} AND ancestor_id = {{scope_node:String}})"
    if rule.node_type:
        params["scope_h"], params["scope_type"] = rule.hierarchy, rule.node_type
        return f"{arn_column} IN (SELECT resource_arn FROM polo.resource_ancestry WHERE hierarchy = {{scope_h:String}} AND ancestor_type = {{scope_type:String}})"
    return "1"


def _categories(include_credits: bool) -> list[str]:
    from polo_pipelines.store.events import CHARGE_CATEGORIES

    return list(CHARGE_CATEGORIES) if include_credits else [c for c in CHARGE_CATEGORIES if c not in NON_USAGE_CATEGORIES]


# The inventory's latest state per resource, with its tags and config properties (and the cost dimension's service
# and collector). ``evaluate`` materializes it once per evaluation; a single rule reads it inline.
STATE = """
    SELECT st.resource_arn AS resource_arn, st.resource_type AS resource_type, st.props AS props, st.aws_account_id AS aws_account_id,
           mapFilter((k, v) -> startsWith(k, 'tag:'), st.props) AS tags, r.service AS service, r.collector AS collector
    FROM (
        SELECT resource_arn, argMax(resource_type, event_time) AS resource_type, argMax(properties, event_time) AS props,
               argMax(aws_account_id, event_time) AS aws_account_id
        FROM polo.resource_events
        WHERE collector = '{INVENTORY_COLLECTOR}' AND event_type = 'config'
        GROUP BY resource_arn
    ) AS st LEFT JOIN polo.resources AS r ON r.resource_arn = st.resource_arn
""".replace("{INVENTORY_COLLECTOR}", INVENTORY_COLLECTOR)


def _resource_set(filters: Mapping[str, Any], prefix: str, params: dict[str, Any]) -> str:
    """``IN (...)``: the resources of the cost dimension matching the filters (only their ids travel, not their columns)."""
    conditions = _filters_sql(filters, prefix, params)
    return f"(SELECT r.resource_arn FROM polo.resources AS r WHERE {' AND '.join(conditions)})"


Window = tuple[dt.date, dt.date, tuple[str, ...]]


def cost_window(rule: Rule, now: dt.datetime) -> Window | None:
    """The (start, end, charge categories) a cost rule sums over; None for state rules."""
    c = rule.condition
    if rule.rule_type == "budget":
        return (*period_bounds(c["period"], now), tuple(_categories(c["include_credits"])))
    if rule.rule_type == "ratio":
        return (*trailing_bounds(c["period"], now), tuple(_categories(False)))
    return None


# Each resource's cost over one window: ``evaluate`` materializes one per window its rules share.
WINDOW_COSTS = """
    SELECT resource_arn, sum(cost) AS cost FROM polo.cost_resource_daily
    WHERE day >= {start:Date} AND day < {end:Date} AND charge_category IN {cats:Array(String)}
    GROUP BY resource_arn
"""


# The same, with each (resource, ancestor) pair: node-scoped rules with filters read it without a join.
WINDOW_NODE_COSTS = """
    SELECT a.hierarchy AS hierarchy, a.ancestor_type AS node_type, a.ancestor_id AS node_id, c.resource_arn AS resource_arn, c.cost AS cost
    FROM {costs} AS c INNER JOIN polo.resource_ancestry AS a ON a.resource_arn = c.resource_arn
"""


@dataclass(frozen=True)
class CostTables:
    resources: str  # resource_arn, cost
    nodes: str | None = None  # hierarchy, node_type, node_id, resource_arn, cost


def compile_rule(
    rule: Rule, now: dt.datetime, state_table: str | None = None, cost_tables: Mapping[Window, CostTables] | None = None
) -> Compiled:
    """The rule as one parameterized query returning its breaches. ``state_table``: a snapshot of STATE to read;
    ``cost_tables``: per window, tables of each resource's (and each node's resources') cost over it; without
    them the daily rollup is summed."""
    params: dict[str, Any] = {}
    window_key = cost_window(rule, now)
    tables = (cost_tables or {}).get(window_key) if window_key is not None else None
    if tables is not None:
        source, window = tables.resources, "1"
    else:
        source = "polo.cost_resource_daily"
        window = "d.day >= {start:Date} AND d.day < {end:Date} AND d.charge_category IN {cats:Array(String)}"
    if tables is not None and tables.nodes and (rule.node_id or rule.node_type):
        _node_expr(rule, params)
        node_source, node_join, node = tables.nodes, "", "d.node_id"
        node_window = (
            "d.hierarchy = {scope_h:String} AND d.node_id = {scope_node:String}"
            if rule.node_id
            else "d.hierarchy = {scope_h:String} AND d.node_type = {scope_type:String}"
        )
    else:
        node_source, node_join, node, node_window = source, _node_join(rule), None, window
    c = rule.condition
    filtered = f"d.resource_arn IN {_resource_set(rule.filters, 'f', params)}" if rule.filters else "1"
    if rule.rule_type == "budget":
        start, end = period_bounds(c["period"], now)
        params.update(start=start, end=end, cats=_categories(c["include_credits"]), max=c["max_usd"])
        if c["per"] == "resource":
            sql = f"""
                SELECT d.resource_arn AS resource_arn, '' AS node_id, sum(d.cost) AS actual_value, {{max:Float64}} AS threshold_value
                FROM {source} AS d
                WHERE {window}
                  AND {_scope_sql(rule, params, "d.resource_arn")} AND {filtered}
                GROUP BY d.resource_arn
                HAVING actual_value > {{max:Float64}}
            """
            return Compiled(sql, params)
        node = node or _node_expr(rule, params)
        if not rule.filters and (rule.node_id or rule.node_type):
            # the node rollup already holds each node's cost per day: no resource is read
            match = "node_id = {scope_node:String}" if rule.node_id else "node_type = {scope_type:String}"
            sql = f"""
                SELECT '' AS resource_arn, node_id, sum(cost) AS actual_value, {{max:Float64}} AS threshold_value
                FROM polo.cost_node_daily
                WHERE hierarchy = {{scope_h:String}} AND {match}
                  AND day >= {{start:Date}} AND day < {{end:Date}} AND charge_category IN {{cats:Array(String)}}
                GROUP BY node_id
                HAVING actual_value > {{max:Float64}}
            """
            return Compiled(sql, params)
        return Compiled(_per_node(node, "sum(d.cost)", node_source, node_join, node_window, filtered), params)
    if rule.rule_type == "ratio":
        start, end = trailing_bounds(c["period"], now)
        params.update(start=start, end=end, cats=_categories(False), max=c["max_ratio"])
        part = f"d.resource_arn IN {_resource_set(c['numerator'], 'n', params)}"
        node = node or _node_expr(rule, params)
        share = f"sumIf(d.cost, {part}) / nullIf(sum(d.cost), 0)"
        return Compiled(_per_node(node, share, node_source, node_join, node_window, filtered), params)
    # state rules: the inventory's latest config per resource
    source = state_table or f"({STATE})"
    filters = _filters_sql(rule.filters, "f", params, column="s")
    scope = _scope_sql(rule, params, "s.resource_arn")
    base = f"""
        FROM {source} AS s
        WHERE s.props['deleted'] != 'true' AND {" AND ".join([scope, *filters])}
    """
    if rule.rule_type == "existence":
        params.update(states=c["state"], max=float(c["max_count"]))
        hours = c.get("outside_business_hours")
        if hours is not None and hours.contains(now):
            return Compiled("SELECT '' AS resource_arn, '' AS node_id, 0.0 AS actual_value, 0.0 AS threshold_value WHERE 0", {})
        sql = f"""
            SELECT resource_arn, '' AS node_id, toFloat64(count() OVER ()) AS actual_value, {{max:Float64}} AS threshold_value
            {base} AND s.props['state'] IN {{states:Array(String)}}
            QUALIFY actual_value > {{max:Float64}}
        """
        return Compiled(sql, params)
    if rule.rule_type == "config":
        params["prop"] = c["property"]
        key = "in" if "in" in c else "not_in"
        params["values"] = c[key]
        test = "NOT IN" if key == "in" else "IN"
        sql = f"""
            SELECT resource_arn, '' AS node_id, 1.0 AS actual_value, 0.0 AS threshold_value
            {base} AND mapContains(s.props, {{prop:String}}) AND s.props[{{prop:String}}] {test} {{values:Array(String)}}
        """
        return Compiled(sql, params)
    params.update(states=c["state"], max=c["max_hours"], now=now.astimezone(dt.UTC).replace(tzinfo=None))
    sql = f"""
        SELECT resource_arn, '' AS node_id,
               dateDiff('second', parseDateTime64BestEffortOrNull(s.props['state_since'], 3, 'UTC'), toDateTime64({{now:DateTime64(3)}}, 3, 'UTC')) / 3600.0 AS actual_value,
               {{max:Float64}} AS threshold_value
        {base} AND s.props['state'] IN {{states:Array(String)}} AND s.props['state_since'] != ''
          AND actual_value > {{max:Float64}}
    """
    return Compiled(sql, params)


def _per_node(node: str, measure: str, source: str, join: str, window: str, filtered: str) -> str:
    """Each node's ``measure`` over its resources' costs, the nodes past ``{max}`` (budget and ratio alike)."""
    return f"""
        SELECT '' AS resource_arn, {node} AS node_id, {measure} AS actual_value, {{max:Float64}} AS threshold_value
        FROM {source} AS d {join}
        WHERE {window} AND {filtered}
        GROUP BY node_id
        HAVING actual_value > {{max:Float64}}
    """


def _node_expr(rule: Rule, params: dict[str, Any]) -> str:
    if rule.node_id:
        params["scope_h"], params["scope_node"] = rule.hierarchy, rule.node_id
        return "{scope_node:String}"
    if rule.node_type:
        params["scope_h"], params["scope_type"] = rule.hierarchy, rule.node_type
        return "a.ancestor_id"
    return "'all'"


def _node_join(rule: Rule) -> str:
    """The scope's (resource, node) pairs, filtered before the join so its hash table holds only them."""
    if rule.node_id:
        pairs = "SELECT resource_arn, ancestor_id FROM polo.resource_ancestry WHERE hierarchy = {scope_h:String} AND ancestor_id = {scope_node:String}"
    elif rule.node_type:
        pairs = "SELECT resource_arn, ancestor_id FROM polo.resource_ancestry WHERE hierarchy = {scope_h:String} AND ancestor_type = {scope_type:String}"
    else:
        return ""
    return f"INNER JOIN ({pairs}) AS a ON a.resource_arn = d.resource_arn"
