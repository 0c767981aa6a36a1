"""`polo hierarchy suggest`: a hierarchy file proposed from the tag and label keys that cover the most cost.

A key's coverage is the share of the window's cost (the charge categories the drill-down explains) on events that
carry a non-empty value for it. Keys that cover enough cost and have a handful to a few hundred values make a
hierarchy each; a key whose values each fall (by cost) under one value of a broader key is nested below it
(``team`` under ``department``). The proposal is a complete hierarchy file: the default hierarchies, then the
proposed ones, with every key's coverage as comments, for the user to accept or edit.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pandas as pd
import yaml

from polo_pipelines.drilldown.periods import Settings
from polo_pipelines.store.storage import Store

MIN_COVERAGE = 0.2  # a key on less than a fifth of the cost explains too little to rank by
MAX_VALUES = 500  # more values than this is an identifier (Name, an id), not a grouping
NESTED_SHARE = 0.95  # a value lies under a broader key's value when that much of its cost does


@dataclass
class Suggestion:
    window: tuple[dt.date, dt.date] | None  # [start, end) read; None when the store holds no cost
    total: float
    keys: pd.DataFrame  # key, coverage, cost, values, proposed (bool), reason
    hierarchies: dict[str, dict]  # name -> the hierarchy file's entry

    def as_yaml(self, defaults: dict[str, dict]) -> str:
        lines = ["# Proposed by `polo hierarchy suggest`: the default hierarchies, then one per tag key that covers enough cost."]
        if self.window:
            start, end = self.window
            lines.append(f"# Coverage of ${self.total:,.2f} of cost from {start} to {end - dt.timedelta(days=1)}:")
        for r in self.keys.itertuples():
            lines.append(
                f"#   {r.key}: {r.coverage:.1%} of cost, {r.values} value(s){'' if r.proposed else ' - not proposed: ' + r.reason}"
            )
        if self.keys.empty:
            lines.append("#   no tag or label on any cost: tag resources (and activate the tags for billing) to rank by them")
        lines.append("# Save it, edit it, and set POLO_HIERARCHY_FILE to its path.")
        body = yaml.safe_dump({"hierarchies": {**defaults, **self.hierarchies}}, sort_keys=False, allow_unicode=True)
        return "\n".join(lines) + "\n" + body


def slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_") or "tag"


def key_coverage(
    store: Store, days: int = 30, settings: Settings = Settings()
) -> tuple[tuple[dt.date, dt.date] | None, float, pd.DataFrame]:
    """The last ``days`` days of cost the store holds: its total and, per tag key, the cost covered and its values."""
    last = store.query_df("SELECT max(event_time) AS last FROM polo.resource_events WHERE event_type = 'cost'")["last"].iloc[0]
    if last is None or pd.isna(last) or pd.Timestamp(last).year < 1971:
        return None, 0.0, pd.DataFrame(columns=["key", "cost", "values"])
    end = pd.Timestamp(last).date() + dt.timedelta(days=1)
    start = end - dt.timedelta(days=days)
    params = {"start": start, "end": end, "cats": settings.categories}
    where = "event_type = 'cost' AND toDate(event_time) >= {start:Date} AND toDate(event_time) < {end:Date} AND charge_category IN {cats:Array(String)}"
    total = float(store.query_df(f"SELECT sum(value) AS total FROM polo.resource_events WHERE {where}", params)["total"].iloc[0] or 0.0)
    keys = store.query_df(
        f"""
        SELECT substring(k, 5) AS key, sum(value) AS cost, uniqExact(properties[k]) AS values
        FROM polo.resource_events ARRAY JOIN mapKeys(properties) AS k
        WHERE {where} AND startsWith(k, 'tag:') AND properties[k] != ''
        GROUP BY key ORDER BY cost DESC, key
        """,
        params,
        columns=["key", "cost", "values"],
    )
    return (start, end), total, keys


def nesting(store: Store, window: tuple[dt.date, dt.date], child: str, parent: str) -> bool:
    """Whether each value of tag ``child`` has (by cost) at least NESTED_SHARE of its cost under one value of ``parent``."""
    frame = store.query_df(
        """
        SELECT c, max(cost) / sum(cost) AS share FROM (
            SELECT properties[{ck:String}] AS c, properties[{pk:String}] AS p, sum(abs(value)) AS cost
            FROM polo.resource_events
            WHERE event_type = 'cost' AND toDate(event_time) >= {start:Date} AND toDate(event_time) < {end:Date}
              AND properties[{ck:String}] != '' AND properties[{pk:String}] != ''
            GROUP BY c, p
        ) GROUP BY c HAVING sum(cost) > 0
        """,
        {"ck": f"tag:{child}", "pk": f"tag:{parent}", "start": window[0], "end": window[1]},
        columns=["c", "share"],
    )
    return not frame.empty and bool((frame["share"] >= NESTED_SHARE).all())


def suggest(store: Store, days: int = 30, min_coverage: float = MIN_COVERAGE) -> Suggestion:
    window, total, keys = key_coverage(store, days)
    keys = keys.copy()
    keys["coverage"] = keys["cost"] / total if total > 0 else 0.0
    keys["proposed"] = (keys["coverage"] >= min_coverage) & (keys["values"] >= 2) & (keys["values"] <= MAX_VALUES)
    keys["reason"] = [
        f"covers under {min_coverage:.0%}"
        if c < min_coverage
        else ("one value only" if v < 2 else f"over {MAX_VALUES} values: an identifier")
        for c, v in zip(keys["coverage"], keys["values"])
    ]
    keys.loc[keys["proposed"], "reason"] = ""
    chosen = keys[keys["proposed"]].sort_values(["values", "coverage"], ascending=[True, False])["key"].tolist()

    # nest a key under the broadest key it lies within; a key that another nests under heads its hierarchy
    parent_of: dict[str, str] = {}
    for child in chosen:
        for parent in chosen:
            if parent == child or parent in parent_of.values():  # one chain per hierarchy: a parent takes one child
                continue
            broader = int(keys.loc[keys["key"] == parent, "values"].iloc[0]) < int(keys.loc[keys["key"] == child, "values"].iloc[0])
            if broader and window and nesting(store, window, child, parent):
                parent_of[child] = parent
                break
    hierarchies: dict[str, dict] = {}
    for key in keys[keys["proposed"]]["key"]:
        if key in parent_of:
            continue
        chain = [key]
        while any(p == chain[-1] for p in parent_of.values()):
            chain.append(next(c for c, p in parent_of.items() if p == chain[-1]))
        name = "_".join(slug(k) for k in chain)
        hierarchies[name] = {
            "description": " → ".join(chain) + " → resource, from the tags (proposed)",
            "levels": [{"type": slug(k), "tag": k} for k in chain],
            "unassigned": f"{slug(chain[0])}:untagged",
        }
    return Suggestion(window, total, keys[["key", "coverage", "cost", "values", "proposed", "reason"]], hierarchies)
