"""lifecycle: no resource of the scope stays in a ``state`` longer than ``max_hours``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from polo_pipelines.rules.sql import Compiled, Context
from polo_pipelines.rules.types import RuleType
from polo_pipelines.rules.validate import need, number, strings


def parse_condition(c: dict[str, Any], where: str, per_node_type: bool) -> dict[str, Any]:
    need("state" in c and "max_hours" in c, where, "a lifecycle rule needs condition.state and condition.max_hours")
    return {"state": strings(c["state"], where, "state"), "max_hours": number(c["max_hours"], where, "max_hours")}


def compile(rule, now: dt.datetime, ctx: Context) -> Compiled:
    c, params = rule.condition, ctx.params
    base = ctx.state_base(rule)
    params.update(states=c["state"], max=c["max_hours"], now=now.astimezone(dt.UTC).replace(tzinfo=None))
    sql = f"""
        SELECT resource_arn, '' AS node_id,
               dateDiff('second', parseDateTime64BestEffortOrNull(s.props['state_since'], 3, 'UTC'), toDateTime64({{now:DateTime64(3)}}, 3, 'UTC')) / 3600.0 AS actual_value,
               {{max:Float64}} AS threshold_value
        {base} AND s.props['state'] IN {{states:Array(String)}} AND s.props['state_since'] != ''
          AND actual_value > {{max:Float64}}
    """
    return Compiled(sql, params)


def message(rule, row) -> str:
    what = row.resource_arn or row.node_id
    return f"{what} {'/'.join(rule.condition['state'])} for {row.actual_value:.1f} h, over {row.threshold_value:g} h ({rule.name})"


TYPE = RuleType(
    name="lifecycle",
    watches="state",
    condition_keys=frozenset({"state", "max_hours"}),
    parse_condition=parse_condition,
    compile=compile,
    message=message,
)
