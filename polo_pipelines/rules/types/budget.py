"""budget: a node's (or each resource's) cost over a day, ISO week or month stays under ``max_usd``."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from typing import Any

import pandas as pd

from polo_pipelines.rules.sql import (
    RECENT,
    Compiled,
    Context,
    categories,
    context,
    node_expr,
    per_node,
    period_bounds,
    recent_bounds,
    scope_sql,
)
from polo_pipelines.rules.types import RuleType
from polo_pipelines.rules.validate import PERIODS, need, number


def parse_condition(c: dict[str, Any], where: str, per_node_type: bool) -> dict[str, Any]:
    need("max_usd" in c, where, "a budget rule needs condition.max_usd")
    out = {"max_usd": number(c["max_usd"], where, "max_usd"), "period": c.get("period", "month"), "per": c.get("per", "node")}
    need(out["period"] in (*PERIODS, RECENT), where, f"period must be one of {', '.join((*PERIODS, RECENT))}")
    need(out["per"] in ("node", "resource"), where, "per must be node or resource")
    out["include_credits"] = bool(c.get("include_credits", False))
    out["warn_projected"] = bool(c.get("warn_projected", out["period"] == "month" and out["per"] == "node"))
    return out


def bounds(period: str, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """[start, end) of a budget's period: days, or the last complete 15 minutes (times)."""
    return recent_bounds(now) if period == RECENT else period_bounds(period, now)


def window(rule, now: dt.datetime):
    return (*bounds(rule.condition["period"], now), tuple(categories(rule.condition["include_credits"])))


def compile(rule, now: dt.datetime, ctx: Context) -> Compiled:
    c, params = rule.condition, ctx.params
    start, end = bounds(c["period"], now)
    params.update(start=start, end=end, cats=categories(c["include_credits"]), max=c["max_usd"])
    if c["per"] == "resource":
        sql = f"""
            SELECT d.resource_arn AS resource_arn, '' AS node_id, sum(d.cost) AS actual_value, {{max:Float64}} AS threshold_value
            FROM {ctx.source} AS d
            WHERE {ctx.window}
              AND {scope_sql(rule, params, "d.resource_arn")} AND {ctx.filtered}
            GROUP BY d.resource_arn
            HAVING actual_value > {{max:Float64}}
        """
        return Compiled(sql, params)
    node = ctx.node or node_expr(rule, params)
    if not rule.filters and (rule.node_id or rule.node_type) and c["period"] != RECENT:
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
    return Compiled(per_node(node, "sum(d.cost)", ctx.node_source, ctx.node_join, ctx.node_window, ctx.filtered), params)


def projected(store, rule, now: dt.datetime, already: set[str]) -> pd.DataFrame | None:
    """Monthly node budgets whose month-to-date cost, carried on at its daily rate, passes the threshold
    (None where the rule asks for no projection)."""
    if not (rule.condition.get("warn_projected") and rule.condition["period"] == "month"):
        return None
    today = now.astimezone(dt.UTC).date()
    start, _ = period_bounds("month", now)
    elapsed = max((today - start).days, 1)  # complete days so far: costs arrive a day late
    days = calendar.monthrange(today.year, today.month)[1]
    relaxed = dataclasses.replace(rule, condition={**rule.condition, "max_usd": 0.0, "warn_projected": False})
    compiled = compile(relaxed, now, context(relaxed))
    mtd = store.query_df(compiled.sql, compiled.params)
    mtd = mtd[~mtd["node_id"].isin(already)]
    out = pd.DataFrame(
        {
            "resource_arn": mtd["resource_arn"],
            "node_id": mtd["node_id"],
            "actual_value": mtd["actual_value"].astype("float64") / elapsed * days,
            "threshold_value": float(rule.condition["max_usd"]),
        }
    )
    return out[out["actual_value"] > rule.condition["max_usd"]].assign(kind="projected")


def message(rule, row) -> str:
    what = row.resource_arn or row.node_id
    period = "15 minutes" if rule.condition["period"] == RECENT else rule.condition["period"]
    return f"{what} cost ${row.actual_value:,.2f} over {period}, over ${row.threshold_value:,.2f} ({rule.name})"


TYPE = RuleType(
    name="budget",
    watches="costs",
    condition_keys=frozenset({"max_usd", "period", "per", "include_credits", "warn_projected"}),
    parse_condition=parse_condition,
    compile=compile,
    message=message,
    window=window,
    more_breaches=projected,
)
