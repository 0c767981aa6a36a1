"""The drill-down as text and as JSON-ready dicts, for `polo delta` and `make run`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from polo_pipelines.drilldown import delta
from polo_pipelines.drilldown.summary import text_table, usd


def _pct(value: float | None) -> str:
    return "new" if value is None or pd.isna(value) else f"{value:+.1f}%"


def headline(store, periods: delta.Periods, settings: delta.Settings) -> tuple[str, dict[str, Any]]:
    compare, current = delta.totals(store, periods, settings)
    last = periods.current_end - dt.timedelta(days=1)
    text = (
        f"Total cost {periods.current_start}..{last}: {usd(current)} "
        f"({usd(current - compare, True)}, {_pct(delta.pct_change(compare, current))} vs "
        f"{periods.compare_start}..{periods.compare_end - dt.timedelta(days=1)})"
    )
    return text, {"current_cost": current, "compare_cost": compare, "delta": current - compare}


def causes(frame: pd.DataFrame) -> str:
    title = "Causes (the most concrete nodes across hierarchies, each resource's change counted once)"
    if frame.empty:
        return f"{title}\n  (nothing moved more than the threshold)"
    top = [
        (arn.rsplit("/", 1)[-1] if "/" in arn else arn.rsplit(":", 1)[-1]) + f" {usd(d, True)}"
        for arn, d in zip(frame["top_resource"], frame["top_resource_delta"])
    ]
    shown = pd.DataFrame({"node": frame["node_id"], "delta": frame["delta"], "resources": frame["resources"], "largest change": top})
    return title + "\n" + _indent(text_table(shown, money=("delta",), signed=("delta",)))


def level1(frame: pd.DataFrame, hierarchy: str, parent: str | None) -> str:
    title = f"Top movers in {hierarchy}" + (f" under {parent}" if parent else "") + " (nodes ranked by |delta|)"
    if frame.empty:
        return f"{title}\n  (no node moved more than the threshold)"
    shown = pd.DataFrame(
        {
            "node": frame["node_id"],
            "compare": frame["compare_cost"],
            "current": frame["current_cost"],
            "delta": frame["delta"],
            "change": [_pct(v) for v in frame["pct_change"]],
        }
    )
    body = text_table(shown, money=("compare", "current", "delta"), signed=("delta",))
    return title + "\n" + _indent(body)


def level2(result: delta.ResourceDeltas) -> str:
    title = f"{result.node_id} ({result.hierarchy}): {usd(result.node_delta, True)}, resources that changed"
    lines = result.lines
    shown = pd.DataFrame(
        {
            "resource": lines["resource_name"].where(lines["resource_name"] != "", lines["resource_arn"]),
            "type": lines["resource_type"],
            "detail": lines["detail"],
            "compare": lines["compare_cost"],
            "current": lines["current_cost"],
            "delta": lines["delta"],
            "change": lines["change_type"],
            "created by": lines["created_by"],
        }
    )
    if result.other_count:
        other = {
            "resource": f"{delta.OTHER}, {result.other_count} resource(s)",
            "type": "",
            "detail": "",
            "compare": float("nan"),
            "current": float("nan"),
            "delta": result.other,
            "change": "",
            "created by": "",
        }
        shown = pd.concat([shown, pd.DataFrame([other])], ignore_index=True)
    body = text_table(shown, money=("compare", "current", "delta"), signed=("delta",)).replace("$nan", "    ")
    return title + "\n" + _indent(body)


def level3(events: Sequence[delta.TimelineEvent], arn: str, start: dt.date, end: dt.date) -> str:
    title = f"{arn}: events {start}..{end - dt.timedelta(days=1)}, newest first"
    if not events:
        return f"{title}\n  (no events in the window)"
    shown = pd.DataFrame(
        {
            "time": [e.event_time.strftime("%Y-%m-%d %H:%M") for e in events],
            "type": [e.event_type for e in events],
            "action": [e.event_action for e in events],
            "value": [f"{e.value:,.2f} {e.unit}" for e in events],
            "actor": [e.actor_name for e in events],
        }
    )
    return title + "\n" + _indent(text_table(shown))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    for row in out:
        for key, value in row.items():
            if isinstance(value, (pd.Timestamp, dt.date)):
                row[key] = value.isoformat()
    return out
