"""Plain queries for the people reading the results: the two-week cost summary and the store's status."""

from __future__ import annotations

import pandas as pd

from polo_pipelines.drilldown.periods import Periods
from polo_pipelines.store.storage import Store


def two_week_costs(store: Store, periods: Periods, by: str) -> pd.DataFrame:
    """Cost per ``by`` ('account' or 'service') of every charge (credits and tax included) in the compare period
    (``previous_week``) and the current one (``last_week``), with the change between them."""
    key = {"account": "if(aws_account_id != '', aws_account_id, provider)", "service": "service"}[by]
    frame = store.query_df(
        f"""
        SELECT {key} AS {by},
               sumIf(value, event_time >= {{ps:Date}} AND event_time < {{pe:Date}}) AS previous_week,
               sumIf(value, event_time >= {{cs:Date}} AND event_time < {{ce:Date}}) AS last_week
        FROM polo.resource_events
        WHERE event_type = 'cost' AND event_time >= {{lo:Date}} AND event_time < {{hi:Date}}
        GROUP BY {by}
        ORDER BY last_week DESC, {by}
        """,
        periods.params(),
    )
    frame["change"] = frame["last_week"] - frame["previous_week"]
    return frame


def status(store: Store) -> pd.DataFrame:
    """Per collector: days loaded, first and last day, events and cost held."""
    return store.query_df(
        """
        SELECT collector, uniqExact(toDate(event_time)) AS days, min(toDate(event_time)) AS first_day,
               max(toDate(event_time)) AS last_day, count() AS events, round(sum(value), 2) AS cost_usd
        FROM polo.resource_events
        GROUP BY collector ORDER BY collector
        """
    )
