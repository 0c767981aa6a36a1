"""What the rule types' compiled queries share: periods, filters and scopes as parameterized SQL, and the tables they read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polo_pipelines.drilldown.periods import week_start
from polo_pipelines.sources.aws.inventory import COLLECTOR as INVENTORY_COLLECTOR
from polo_pipelines.store.events import ALLOCATION_COLLECTORS, CHARGE_CATEGORIES, NON_USAGE_CATEGORIES

if TYPE_CHECKING:
    from polo_pipelines.rules.ruleset import Rule


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


RECENT = "15min"  # a budget's period of the last complete 15 minutes: the spans' estimates, minutes after they ran
BUCKET = dt.timedelta(minutes=15)


def recent_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the last complete 15 minutes before ``now``, as naive UTC times (the store's)."""
    moment = now.astimezone(dt.UTC).replace(tzinfo=None)
    end = moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)
    return end - BUCKET, end


def trailing_bounds(period: str, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """[start, end): the last 1, 7 or 30 complete UTC days, for ratios (a proportion has no calendar reset)."""
    today = now.astimezone(dt.UTC).date()
    return today - dt.timedelta(days={"day": 1, "week": 7, "month": 30}[period]), today


def filters_sql(filters: Mapping[str, Any], prefix: str, params: dict[str, Any], column: str = "r") -> list[str]:
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


def scope_sql(rule: Rule, params: dict[str, Any], arn_column: str = "resource_arn") -> str:
    if rule.node_id:
        params["scope_h"], params["scope_node"] = rule.hierarchy, rule.node_id
        return f"{arn_column} IN (SELECT resource_arn FROM polo.resource_ancestry WHERE hierarchy = {{scope_h:String}} AND ancestor_id = {{scope_node:String}})"
    if rule.node_type:
        params["scope_h"], params["scope_type"] = rule.hierarchy, rule.node_type
        return f"{arn_column} IN (SELECT resource_arn FROM polo.resource_ancestry WHERE hierarchy = {{scope_h:String}} AND ancestor_type = {{scope_type:String}})"
    return "1"


def categories(include_credits: bool) -> list[str]:
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


def resource_set(filters: Mapping[str, Any], prefix: str, params: dict[str, Any]) -> str:
    """``IN (...)``: the resources of the cost dimension matching the filters (only their ids travel, not their columns)."""
    conditions = filters_sql(filters, prefix, params)
    return f"(SELECT r.resource_arn FROM polo.resources AS r WHERE {' AND '.join(conditions)})"


Window = tuple[dt.date, dt.date, tuple[str, ...]]


# Each resource's cost over one window: ``evaluate`` materializes one per window its rules share.
WINDOW_COSTS = """
    SELECT resource_arn, sum(cost) AS cost FROM polo.cost_resource_daily
    WHERE day >= {start:Date} AND day < {end:Date} AND charge_category IN {cats:Array(String)}
    GROUP BY resource_arn
"""


# The same over part of a day (a 15-minute budget): the events themselves, the daily rollup being too coarse.
RECENT_COSTS = """
    SELECT resource_arn, sum(value) AS cost FROM polo.resource_events
    WHERE event_type = 'cost' AND event_time >= {start:DateTime64(3)} AND event_time < {end:DateTime64(3)}
      AND charge_category IN {cats:Array(String)}
    GROUP BY resource_arn
"""


def window_costs(start: dt.date) -> str:
    """The query of each resource's cost over a window starting at ``start``: days, or a time within a day."""
    return RECENT_COSTS if isinstance(start, dt.datetime) else WINDOW_COSTS


# The same, with each (resource, ancestor) pair: node-scoped rules with filters read it without a join.
WINDOW_NODE_COSTS = """
    SELECT a.hierarchy AS hierarchy, a.ancestor_type AS node_type, a.ancestor_id AS node_id, c.resource_arn AS resource_arn, c.cost AS cost
    FROM {costs} AS c INNER JOIN polo.resource_ancestry AS a ON a.resource_arn = c.resource_arn
"""


@dataclass(frozen=True)
class CostTables:
    resources: str  # resource_arn, cost
    nodes: str | None = None  # hierarchy, node_type, node_id, resource_arn, cost


def per_node(node: str, measure: str, source: str, join: str, window: str, filtered: str) -> str:
    """Each node's ``measure`` over its resources' costs, the nodes past ``{max}`` (budget and ratio alike)."""
    return f"""
        SELECT '' AS resource_arn, {node} AS node_id, {measure} AS actual_value, {{max:Float64}} AS threshold_value
        FROM {source} AS d {join}
        WHERE {window} AND {filtered}
        GROUP BY node_id
        HAVING actual_value > {{max:Float64}}
    """


def node_expr(rule: Rule, params: dict[str, Any]) -> str:
    if rule.node_id:
        params["scope_h"], params["scope_node"] = rule.hierarchy, rule.node_id
        return "{scope_node:String}"
    if rule.node_type:
        params["scope_h"], params["scope_type"] = rule.hierarchy, rule.node_type
        return "a.ancestor_id"
    return "'all'"


def node_join(rule: Rule) -> str:
    """The scope's (resource, node) pairs, filtered before the join so its hash table holds only them."""
    if rule.node_id:
        pairs = "SELECT resource_arn, ancestor_id FROM polo.resource_ancestry WHERE hierarchy = {scope_h:String} AND ancestor_id = {scope_node:String}"
    elif rule.node_type:
        pairs = "SELECT resource_arn, ancestor_id FROM polo.resource_ancestry WHERE hierarchy = {scope_h:String} AND ancestor_type = {scope_type:String}"
    else:
        return ""
    return f"INNER JOIN ({pairs}) AS a ON a.resource_arn = d.resource_arn"


@dataclass
class Context:
    """Where a cost rule's query reads from, worked out once for every type (``ruleset.compile_rule``).

    ``source``/``window``: each resource's cost over the rule's window (a shared snapshot, or the daily
    rollup filtered by ``window``); ``node_source``/``node_join``/``node``/``node_window``: the same per
    node of the scope; ``filtered``: the rule's filters as a condition; ``state_table``: a snapshot of
    the inventory's state for state rules (None: read STATE inline)."""

    params: dict[str, Any] = field(default_factory=dict)
    source: str = "polo.cost_resource_daily"
    window: str = "1"
    node_source: str = ""
    node_join: str = ""
    node: str | None = None
    node_window: str = "1"
    filtered: str = "1"
    state_table: str | None = None

    def state_base(self, rule: Rule) -> str:
        """FROM and WHERE of a state rule: the inventory's live resources in the rule's scope and filters."""
        source = self.state_table or f"({STATE})"
        filters = filters_sql(rule.filters, "f", self.params, column="s")
        scope = scope_sql(rule, self.params, "s.resource_arn")
        return f"""
        FROM {source} AS s
        WHERE s.props['deleted'] != 'true' AND {" AND ".join([scope, *filters])}
    """


def context(rule: Rule, state_table: str | None = None, tables: CostTables | None = None) -> Context:
    """Which tables a rule's query reads: the shared snapshots of its window where the evaluation made them."""
    ctx = Context(state_table=state_table)
    if tables is not None:
        ctx.source, ctx.window = tables.resources, "1"
    elif rule.condition.get("period") == RECENT:
        ctx.source, ctx.window = f"({RECENT_COSTS})", "1"
    else:
        ctx.window = "d.day >= {start:Date} AND d.day < {end:Date} AND d.charge_category IN {cats:Array(String)}"
    if tables is not None and tables.nodes and (rule.node_id or rule.node_type):
        node_expr(rule, ctx.params)
        ctx.node_source, ctx.node_join, ctx.node = tables.nodes, "", "d.node_id"
        ctx.node_window = (
            "d.hierarchy = {scope_h:String} AND d.node_id = {scope_node:String}"
            if rule.node_id
            else "d.hierarchy = {scope_h:String} AND d.node_type = {scope_type:String}"
        )
    else:
        ctx.node_source, ctx.node_join, ctx.node_window = ctx.source, node_join(rule), ctx.window
    if rule.filters:
        ctx.filtered = f"d.resource_arn IN {resource_set(rule.filters, 'f', ctx.params)}"
    if not (rule.node_id or rule.node_type) and "collector" not in rule.filters:
        # a rule on everything counts a host once: not again as the spans' share of it (unless it names the collector)
        ctx.params["allocations"] = list(ALLOCATION_COLLECTORS)
        billed = "d.resource_arn NOT IN (SELECT resource_arn FROM polo.resources WHERE collector IN {allocations:Array(String)})"
        ctx.filtered = billed if ctx.filtered == "1" else f"{ctx.filtered} AND {billed}"
    return ctx
