"""ratio: the share of a node's cost that its matching resources (``numerator`` filters) take stays under ``max_ratio``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from polo_pipelines.rules.sql import Compiled, Context, categories, node_expr, per_node, resource_set, trailing_bounds
from polo_pipelines.rules.types import RuleType
from polo_pipelines.rules.validate import PERIODS, need, number, parse_filters


def parse_condition(c: dict[str, Any], where: str, per_node_type: bool) -> dict[str, Any]:
    numerator = c.get("numerator")
    need(isinstance(numerator, Mapping) and bool(numerator), where, "a ratio rule needs condition.numerator (filters for the part)")
    out = {
        "numerator": parse_filters(numerator, f"{where}.condition.numerator"),
        "max_ratio": number(c.get("max_ratio"), where, "max_ratio"),
        "period": c.get("period", "week"),
    }
    need(out["max_ratio"] <= 1, where, "max_ratio is a fraction (0.15 for 15%)")
    need(out["period"] in PERIODS, where, f"period must be one of {', '.join(PERIODS)}")
    return out


def window(rule, now: dt.datetime):
    # a proportion has no calendar reset: the last 1, 7 or 30 complete days
    return (*trailing_bounds(rule.condition["period"], now), tuple(categories(False)))


def compile(rule, now: dt.datetime, ctx: Context) -> Compiled:
    c, params = rule.condition, ctx.params
    start, end = trailing_bounds(c["period"], now)
    params.update(start=start, end=end, cats=categories(False), max=c["max_ratio"])
    part = f"d.resource_arn IN {resource_set(c['numerator'], 'n', params)}"
    node = ctx.node or node_expr(rule, params)
    share = f"sumIf(d.cost, {part}) / nullIf(sum(d.cost), 0)"
    return Compiled(per_node(node, share, ctx.node_source, ctx.node_join, ctx.node_window, ctx.filtered), params)


def message(rule, row) -> str:
    what = row.resource_arn or row.node_id
    return f"{what}: {row.actual_value:.1%} of its cost, over {row.threshold_value:.0%} ({rule.name})"


TYPE = RuleType(
    name="ratio",
    watches="costs",
    condition_keys=frozenset({"numerator", "max_ratio", "period"}),
    parse_condition=parse_condition,
    compile=compile,
    message=message,
    window=window,
    node_costs=True,
)
