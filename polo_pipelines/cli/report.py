"""The drill-down as text, for `polo delta` and `make run`: the service's typed results rendered as tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import pandas as pd

from polo_pipelines.cli.text import text_table, usd
from polo_pipelines.drilldown import delta
from polo_pipelines.drilldown.completeness import Completeness
from polo_pipelines.drilldown.explain import amount
from polo_pipelines.drilldown.periods import Periods, day_span
from polo_pipelines.drilldown.service import Cause, Headline, NodeDelta, NodeResources


def _frame(rows: Sequence, row_type: type) -> pd.DataFrame:
    names = [f.name for f in dataclasses.fields(row_type)]
    return pd.DataFrame([dataclasses.astuple(r) for r in rows], columns=names)


def headline(total: Headline, periods: Periods) -> str:
    line = (
        f"Total cost {day_span(periods.current_start, periods.current_end)}: {usd(total.current_cost)} "
        f"({usd(total.delta, True)}, {delta.change_label(total.compare_cost, total.current_cost)} vs {day_span(periods.compare_start, periods.compare_end)})"
    )
    billed = [(b, c) for b, c in ((total.current_billed, total.current_cost), (total.compare_billed, total.compare_cost)) if b is not None]
    if any(abs(b - c) >= delta.CENT for b, c in billed):  # the effective view spread commitments: say what was billed
        line += f"\n  billed {usd(total.current_billed)} ({usd(total.compare_billed)} the period before): commitments on the day they were billed"
    return line


def completeness(found: Mapping[str, Completeness], current: str = "the current period", compare: str = "the compare period") -> list[str]:
    """A line per period whose figures are incomplete or not final, marked so it is not read past."""
    names = {"current": current, "compare": compare}
    return [f"! {c.words(names[key])}" for key, c in found.items() if not c.complete or c.restated]


def account_names(accounts: pd.Series, org: pd.DataFrame) -> list[str]:
    """Each account id's name in the AWS Organization ("" where it has none, or the Organization was never read)."""
    names = {} if org.empty else dict(zip(org["account_id"].astype(str), org["account_name"].astype(str)))
    return [names.get(str(a), "") for a in accounts]


def short_name(arn: str) -> str:
    """A resource as a line of text names it: its id's last part; a service-level line with its account
    (``AmazonEC2/us-east-1 in 111111111111``), since two accounts' lines would otherwise read alike."""
    if arn.startswith("aws:") and arn.count("/") >= 2:
        account, rest = arn[4:].split("/", 1)
        return f"{rest} in {account}"
    return arn.rsplit("/", 1)[-1] if "/" in arn else arn.rsplit(":", 1)[-1]


def causes(found: Sequence[Cause]) -> str:
    title = "Causes (the most concrete nodes across hierarchies, each resource's change counted once)"
    if not found:
        return f"{title}\n  (nothing moved more than the threshold)"
    frame = _frame(found, Cause)
    top = [
        f"{name or short_name(arn)} {usd(d, True)}"
        for arn, d, name in zip(frame["top_resource"], frame["top_resource_delta"], frame["top_resource_name"])
    ]
    shown = pd.DataFrame({"node": frame["node_id"], "delta": frame["delta"], "resources": frame["resources"], "largest change": top})
    return title + "\n" + _indent(text_table(shown, money=("delta",), signed=("delta",)))


def level1(nodes: Sequence[NodeDelta], hierarchy: str, parent: str | None) -> str:
    title = f"Top movers in {hierarchy}" + (f" under {parent}" if parent else "") + " (nodes ranked by |delta|)"
    if not nodes:
        return f"{title}\n  (no node moved more than the threshold)"
    frame = _frame(nodes, NodeDelta)
    shown = pd.DataFrame(
        {
            "node": frame["node_id"],
            "compare": frame["compare_cost"],
            "current": frame["current_cost"],
            "delta": frame["delta"],
            "change": [delta.change_label(c, n) for c, n in zip(frame["compare_cost"], frame["current_cost"])],
        }
    )
    body = text_table(shown, money=("compare", "current", "delta"), signed=("delta",))
    return title + "\n" + _indent(body)


def level2(result: NodeResources) -> str:
    from polo_pipelines.drilldown.service import ResourceDelta

    title = f"{result.node_id} ({result.hierarchy}): {usd(result.node_delta, True)}, resources that changed"
    lines = _frame(result.lines, ResourceDelta)
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
        shown = pd.concat([shown, pd.DataFrame([other])], ignore_index=True) if len(shown) else pd.DataFrame([other])
    body = text_table(shown, money=("compare", "current", "delta"), signed=("delta",)).replace("$nan", "    ")
    return title + "\n" + _indent(body)


def level3(events: Sequence[delta.TimelineEvent], arn: str, start: dt.date, end: dt.date) -> str:
    title = f"{arn}: events {day_span(start, end)}, newest first"
    if not events:
        return f"{title}\n  (no events in the window)"
    columns = {
        "time": [e.event_time.strftime("%Y-%m-%d %H:%M") for e in events],
        "type": [e.event_type for e in events],
        "action": [e.event_action for e in events],
        "what": [what(e) for e in events],
    }
    if any(e.actor_name for e in events):  # an empty column says nothing
        columns["actor"] = [e.actor_name for e in events]
    return title + "\n" + _indent(text_table(pd.DataFrame(columns)))


def what(event: delta.TimelineEvent) -> str:
    """A cost as money, a metric as its amount, a change as its summary."""
    if event.event_type == "cost":
        return usd(event.value)
    if event.event_type == "metric":
        return amount(event.value, event.unit)
    return event.properties.get("summary") or event.properties.get("state") or ""


def explanation(found) -> str:
    return f"  Explanation: {found.text}"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
