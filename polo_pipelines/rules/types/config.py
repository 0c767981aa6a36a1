"""config: every resource of the scope has its config ``property`` in (or not in) the allowed values."""

from __future__ import annotations

import datetime as dt
from typing import Any

from polo_pipelines.rules.sql import Compiled, Context
from polo_pipelines.rules.types import RuleType
from polo_pipelines.rules.validate import need, strings


def parse_condition(c: dict[str, Any], where: str, per_node_type: bool) -> dict[str, Any]:
    need(isinstance(c.get("property"), str) and c["property"], where, "a config rule needs condition.property")
    need(("in" in c) != ("not_in" in c), where, "a config rule needs exactly one of condition.in / condition.not_in")
    key = "in" if "in" in c else "not_in"
    return {"property": c["property"], key: strings(c[key], where, key)}


def compile(rule, now: dt.datetime, ctx: Context) -> Compiled:
    c, params = rule.condition, ctx.params
    base = ctx.state_base(rule)
    params["prop"] = c["property"]
    key = "in" if "in" in c else "not_in"
    params["values"] = c[key]
    test = "NOT IN" if key == "in" else "IN"
    sql = f"""
        SELECT resource_arn, '' AS node_id, 1.0 AS actual_value, 0.0 AS threshold_value
        {base} AND mapContains(s.props, {{prop:String}}) AND s.props[{{prop:String}}] {test} {{values:Array(String)}}
    """
    return Compiled(sql, params)


def message(rule, row) -> str:
    return f"{row.resource_arn or row.node_id} breaks {rule.name}"


TYPE = RuleType(
    name="config",
    watches="state",
    condition_keys=frozenset({"property", "in", "not_in"}),
    parse_condition=parse_condition,
    compile=compile,
    message=message,
)
