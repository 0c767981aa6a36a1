"""existence: at most ``max_count`` resources of the scope in a ``state`` (optionally only outside business hours)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from polo_pipelines.rules.sql import Compiled, Context
from polo_pipelines.rules.types import RuleType
from polo_pipelines.rules.validate import need, number, parse_business_hours, strings


def parse_condition(c: dict[str, Any], where: str, per_node_type: bool) -> dict[str, Any]:
    need("state" in c, where, "an existence rule needs condition.state")
    out = {"state": strings(c["state"], where, "state"), "max_count": int(number(c.get("max_count", 0), where, "max_count"))}
    if c.get("outside_business_hours"):
        out["outside_business_hours"] = parse_business_hours(c["outside_business_hours"], where)
    return out


def compile(rule, now: dt.datetime, ctx: Context) -> Compiled:
    c, params = rule.condition, ctx.params
    base = ctx.state_base(rule)
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


def message(rule, row) -> str:
    what = row.resource_arn or row.node_id
    return f"{what} is {'/'.join(rule.condition['state'])}: {row.actual_value:g} found, {row.threshold_value:g} allowed ({rule.name})"


TYPE = RuleType(
    name="existence",
    watches="state",
    condition_keys=frozenset({"state", "max_count", "outside_business_hours"}),
    parse_condition=parse_condition,
    compile=compile,
    message=message,
)
