"""Plain queries for the people reading the results: the two-week cost summary and the store's status."""

from __future__ import annotations

import pandas as pd

from polo_pipelines.drilldown.periods import Periods
from polo_pipelines.store.events import ALLOCATION_COLLECTORS
from polo_pipelines.store.storage import Store


def two_week_costs(store: Store, periods: Periods, by: str) -> pd.DataFrame:
    """Cost per ``by`` ('account', 'service' or 'charge_category') of every charge (credits and tax included) in the
    compare period (``previous_week``) and the current one (``last_week``), with the change between them, and what was
    billed last week (``billed_last_week``: before amortization, where the effective view spreads commitments), last
    week's credits and adjustments (``credits_last_week``) and the amounts' magnitude over both weeks (``gross``: a row
    whose credits cancel its usage is not a row of zeros). An allocation's costs (spans' shares of billed hosts) are
    left out: they are the bill's again."""
    key = {"account": "if(aws_account_id != '', aws_account_id, provider)", "service": "service", "charge_category": "charge_category"}[by]
    frame = store.query_df(
        f"""
        SELECT {key} AS {by},
               sumIf(value, event_time >= {{ps:Date}} AND event_time < {{pe:Date}}) AS previous_week,
               sumIf(value, event_time >= {{cs:Date}} AND event_time < {{ce:Date}}) AS last_week,
               sumIf(billed_cost, event_time >= {{cs:Date}} AND event_time < {{ce:Date}}) AS billed_last_week,
               sumIf(value, event_time >= {{cs:Date}} AND event_time < {{ce:Date}}
                            AND charge_category IN ('Credit', 'Adjustment')) AS credits_last_week,
               sumIf(abs(value) + abs(billed_cost), event_time >= {{ps:Date}} AND event_time < {{ce:Date}}) AS gross
        FROM polo.resource_events
        WHERE event_type = 'cost' AND event_time >= {{lo:Date}} AND event_time < {{hi:Date}}
          AND collector NOT IN {{allocations:Array(String)}}
        GROUP BY {by}
        ORDER BY last_week DESC, {by}
        """,
        {**periods.params(), "allocations": list(ALLOCATION_COLLECTORS)},
    )
    frame["change"] = frame["last_week"] - frame["previous_week"]
    return frame


def without_zeros(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows with an amount that shows as more than $0.00 in either week (or amounts that cancel out), and how many
    were left out."""
    from polo_pipelines.drilldown.delta import CENT

    shown = (frame[["previous_week", "last_week", "billed_last_week", "gross"]].abs() >= CENT).any(axis=1)
    return frame[shown].reset_index(drop=True), int((~shown).sum())


def offsets(by_category: pd.DataFrame, week: str = "last_week") -> str:
    """What a week's total is made of, where credits, refunds or tax change it: "$47.68 usage, -$47.68 credits"."""
    from polo_pipelines.cli.text import usd
    from polo_pipelines.drilldown.delta import CENT

    amounts = dict(zip(by_category["charge_category"], by_category[week]))
    if all(abs(amounts.get(c, 0.0)) < CENT for c in ("Credit", "Tax", "Adjustment")):
        return ""
    words = {"Usage": "usage", "Purchase": "purchases", "Credit": "credits", "Tax": "tax", "Adjustment": "adjustments"}
    return ", ".join(f"{usd(amounts[c])} {words.get(c, c.lower())}" for c in words if abs(amounts.get(c, 0.0)) >= CENT)


def status(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per collector: days loaded, first and last day, events held; the cost collectors (with their cost) first,
    then the activity collectors (the inventory's config and lifecycle events, which cost nothing)."""
    frame = store.query_df(
        """
        SELECT collector, uniqExact(toDate(event_time)) AS days, min(toDate(event_time)) AS first_day,
               max(toDate(event_time)) AS last_day, count() AS events, round(sumIf(value, event_type = 'cost'), 2) AS cost_usd,
               countIf(event_type = 'cost') > 0 AS costs
        FROM polo.resource_events
        GROUP BY collector ORDER BY collector
        """
    )
    costs = frame["costs"].astype(bool)
    cost = frame[costs].drop(columns="costs").reset_index(drop=True)
    activity = frame[~costs].drop(columns=["costs", "cost_usd"]).reset_index(drop=True)
    return cost, activity
