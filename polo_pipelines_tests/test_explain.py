"""Level 3's explanation, computed from a resource's own events: the change point, the matching metric, the activity."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from polo_pipelines.drilldown.explain import change_point
from polo_pipelines.drilldown.periods import DeltaError, Periods
from polo_pipelines.drilldown.service import DrillDown
from polo_pipelines.store.events import conform, day_range, replace_days

from .conftest import load_daily_costs

NAT = "arn:aws:ec2:us-east-1:111111111111:natgateway/nat-1"
PERIODS = Periods(dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 2), dt.date(2026, 11, 9))
DAYS = day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 16))
CHANGE = dt.date(2026, 11, 11)


def events(kind: str, values: list[float], *, metric: str = "", unit: str = "", collector: str) -> pd.DataFrame:
    return conform(
        pd.DataFrame(
            {
                "resource_arn": NAT,
                "resource_type": "ec2:natgateway",
                "resource_name": "nat-1",
                "event_time": pd.to_datetime(DAYS),
                "event_type": kind,
                "event_action": metric,
                "value": values,
                "billed_cost": 0.0,
                "list_cost": 0.0,
                "charge_category": "",
                "service": "",
                "provider": "AWS",
                "unit": unit,
                "properties": [{"metric": metric}] * len(DAYS),
                "actor_name": "",
                "collector": collector,
                "aws_account_id": "111111111111",
                "aws_region": "us-east-1",
            }
        )
    )


def load_costs(store, per_day: list[float]) -> None:
    load_daily_costs(store, {NAT: per_day}, DAYS, resource_type="ec2:natgateway")


def test_the_change_point_is_the_split_that_moves_the_mean_most():
    days = list(range(8))
    assert change_point(days, [7, 7, 7, 7, 26, 26, 26, 26]) == 4
    assert change_point(days, [7, 7, 7, 8, 7, 7, 7, 7]) in (3, 4)
    assert change_point([1], [5.0]) is None


def test_the_metric_that_matches_the_cost_and_the_activity_at_the_change(store):
    after = [d >= CHANGE for d in DAYS]
    load_costs(store, [26.0 if a else 7.2 for a in after])
    gb = 1e9
    metrics = pd.concat(
        [
            events("metric", [840 * gb if a else 210 * gb for a in after], metric="bytes processed", unit="Bytes", collector="metrics_aws"),
            events("metric", [41.0 if a else 40.0 for a in after], metric="active connections", unit="Count", collector="metrics_aws"),
        ],
        ignore_index=True,
    )
    replace_days(store, metrics, collector="metrics_aws", days=DAYS, source="test")
    routed = conform(
        events("config", [0.0] * len(DAYS), collector="activity_aws")
        .iloc[[9]]
        .assign(
            event_time=pd.Timestamp("2026-11-11 09:14"),
            event_action="routed",
            actor_name="alice@example.com",
            properties=[{"summary": "3 new instance(s) routing via this NAT"}],
        )
    )
    replace_days(store, routed, collector="activity_aws", days=[CHANGE], source="test")

    found = DrillDown(store).explain(NAT, PERIODS)
    assert found.change_day == CHANGE
    assert found.metric is not None and found.metric.name == "bytes processed"  # not the connections, which barely moved
    assert found.text == (
        "bytes processed 4.0× (210 GB → 840 GB a day); cost 3.6× from 2026-11-11 ($7.20 → $26.00 a day); "
        "at the change: 3 new instance(s) routing via this NAT (alice@example.com)"
    )
    assert found.as_json()["activity"][0]["actor_name"] == "alice@example.com"

    # Level 3 whole from one read: the same timeline as the timeline's own query, the same explanation
    service = DrillDown(store)
    whole = service.story(NAT, PERIODS, limit=20)
    assert whole.events == service.timeline(NAT, PERIODS.compare_start, PERIODS.current_end, limit=20)
    assert len(whole.events) == 20 and whole.events[0].event_time > whole.events[-1].event_time
    assert whole.explanation == found
    assert whole.as_json()["events"][0]["event_time"] == whole.events[0].event_time.isoformat()


def test_where_nothing_explains_the_change_it_says_so(store):
    load_costs(store, [26.0 if d >= CHANGE else 7.2 for d in DAYS])
    found = DrillDown(store).explain(NAT, PERIODS)
    assert found.text == "cost 3.6× from 2026-11-11 ($7.20 → $26.00 a day); no activity or metric explains this change; price or rate?"


def test_an_unknown_resource_is_an_error_and_an_empty_window_is_not(store):
    load_costs(store, [1.0] * len(DAYS))
    with pytest.raises(DeltaError, match="unknown resource"):
        DrillDown(store).story(NAT.replace("nat-1", "nat-404"), PERIODS)
    earlier = Periods(dt.date(2025, 1, 9), dt.date(2025, 1, 16), dt.date(2025, 1, 2), dt.date(2025, 1, 9))
    assert DrillDown(store).story(NAT, earlier).events == []
