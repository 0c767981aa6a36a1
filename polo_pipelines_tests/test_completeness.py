"""Every figure says how complete it is: missing days and unsettled days per collector, in words and in JSON."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

from polo_pipelines.cli import main as cli
from polo_pipelines.drilldown.completeness import completeness, runs, span
from polo_pipelines.drilldown.periods import Periods
from polo_pipelines.hierarchy import ancestry as hy
from polo_pipelines.hierarchy.rollup import rebuild_node_rollup
from polo_pipelines.store import polo_store
from polo_pipelines.store.events import cost_events, day_range, replace_days

PERIODS = Periods(dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 2), dt.date(2026, 11, 9))
TODAY = dt.date(2026, 11, 20)


def load(store, collector: str, days: list[dt.date], usd: float = 10.0, empty: tuple[dt.date, ...] = ()) -> None:
    """One resource's flat daily cost on ``days`` (and ``empty`` days loaded with nothing: the source said so)."""
    frame = cost_events(
        resource_arn=[f"{collector}:r1"] * len(days),
        resource_type="service",
        resource_name="r1",
        day=pd.to_datetime(days),
        charge_category="Usage",
        value=usd,
        billed_cost=usd,
        list_cost=usd,
        service="svc",
        provider="AWS",
        properties=[{}] * len(days),
        collector=collector,
    )
    replace_days(store, frame, collector=collector, days=sorted([*days, *empty]), source="test")


def test_day_runs_read_as_people_write_them():
    days = [dt.date(2026, 4, 17), dt.date(2026, 4, 18), dt.date(2026, 4, 19), dt.date(2026, 4, 30), dt.date(2026, 5, 1)]
    assert [span(*r) for r in runs(days)] == ["2026-04-17..19", "2026-04-30..2026-05-01"]


def test_missing_and_unsettled_days_are_named_per_collector_and_period(polo_home, capsys, monkeypatch):
    monkeypatch.setenv("POLO_LOOKBACK_DAYS", "3")
    with polo_store() as store:
        gap = {dt.date(2026, 11, 11), dt.date(2026, 11, 12)}
        load(store, "cost_aws", [d for d in day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 19)) if d not in gap])
        # GitHub's export ends part-way: its last loaded days are still being restated; a day loaded empty is not missing
        load(store, "cost_github", day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 13)), empty=(dt.date(2026, 11, 13),))
        hy.refresh(store, hy.load(hy.DEFAULT_FILE))
        rebuild_node_rollup(store)
        current = completeness(store, PERIODS.current_start, PERIODS.current_end, today=TODAY)
        compare = completeness(store, PERIODS.compare_start, PERIODS.compare_end, today=TODAY)
    assert compare.complete and compare.words() == ""
    by = {g.collector: g for g in current.gaps}
    assert by["cost_aws"].missing == (dt.date(2026, 11, 11), dt.date(2026, 11, 12)) and not by["cost_aws"].unsettled
    assert by["cost_github"].missing == (dt.date(2026, 11, 14), dt.date(2026, 11, 15))
    assert by["cost_github"].unsettled == (dt.date(2026, 11, 11), dt.date(2026, 11, 12), dt.date(2026, 11, 13))
    assert current.words("this week") == (
        "cost_aws: 2026-11-11..12 missing; cost_github: 2026-11-14..15 missing; 2026-11-11..13 unsettled: "
        "figures for this week are incomplete"
    )

    # every output says so: the drill-down's text and JSON, the summary's text and JSON
    argv = ["--since", "2026-11-09", "--until", "2026-11-15"]
    assert cli.main(["delta", *argv]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[1].startswith("! cost_aws: 2026-11-11..12 missing") and text[1].endswith("the current period are incomplete")
    assert cli.main(["delta", *argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["completeness"]
    assert doc["current"]["complete"] is False and doc["compare"]["complete"] is True
    aws = next(c for c in doc["current"]["collectors"] if c["collector"] == "cost_aws")
    assert aws["missing"] == [["2026-11-11", "2026-11-12"]] and aws["unsettled"] == [] and aws["restated"] == []
    assert cli.main(["delta", *argv, "--node", "platform:aws"]) == 0  # Level 2 too, above its table
    assert capsys.readouterr().out.startswith("! cost_aws: 2026-11-11..12 missing")
    assert cli.main(["summary", "--today", "2026-11-18"]) == 0
    assert "! cost_aws: 2026-11-11..12 missing" in capsys.readouterr().out
    assert cli.main(["summary", "--today", "2026-11-18", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["completeness"]["current"]["complete"] is False


def test_days_before_the_start_date_are_refused_naming_the_setting_and_the_first_day(polo_home, monkeypatch):
    import pytest

    from polo_pipelines.sources.sample import write_sample

    write_sample(end=dt.date(2026, 12, 1))  # the sample world's export: 2026-10-07..2026-11-30
    monkeypatch.setenv("POLO_START_DATE", "2026-10-15")
    with pytest.raises(ValueError) as err:
        cli.run_collection(dt.date(2026, 10, 7), dt.date(2026, 12, 1))
    assert str(err.value).startswith("2026-10-07..2026-10-14 is before POLO_START_DATE (2026-10-15)")
    assert "(cost_aws holds 2026-10-01..2026-11-30" in str(err.value)  # its billing periods, from the manifests
    assert "set POLO_START_DATE=2026-10-07 or earlier" in str(err.value)
    monkeypatch.setenv("POLO_START_DATE", "2026-10-01")
    with pytest.raises(ValueError, match=r"the sources hold nothing before it: start the range at 2026-10-01"):
        cli.partition_range_allowed(dt.date(2026, 9, 1), dt.date(2026, 12, 1))
    monkeypatch.setenv("POLO_START_DATE", "15/10/2026")
    with pytest.raises(ValueError, match="POLO_START_DATE must be a date"):
        cli.partition_range_allowed(dt.date(2026, 10, 7), dt.date(2026, 12, 1))


def test_a_day_restated_since_it_was_first_loaded_shows_its_old_and_new_figures(polo_home, capsys, monkeypatch):
    monkeypatch.setenv("POLO_LOOKBACK_DAYS", "1")
    days = day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 19))
    with polo_store() as store:
        load(store, "cost_aws", days, usd=10.0)
        load(store, "cost_aws", [dt.date(2026, 11, 12)], usd=14.2)  # the export restated one day
        load(store, "cost_aws", [dt.date(2026, 11, 13)], usd=10.001)  # and another by less than a cent
        hy.refresh(store, hy.load(hy.DEFAULT_FILE))
        rebuild_node_rollup(store)
        current = completeness(store, PERIODS.current_start, PERIODS.current_end, today=TODAY)
        compare = completeness(store, PERIODS.compare_start, PERIODS.compare_end, today=TODAY)
    assert current.complete and not compare.restated  # restated is not incomplete
    assert (
        current.words("this week") == "cost_aws: restated 2026-11-12 $10.00 → $14.20: figures for this week are restated since first loaded"
    )
    assert cli.main(["delta", "--since", "2026-11-09", "--until", "2026-11-15", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["completeness"]["current"]
    assert doc["complete"] is True
    assert doc["collectors"][0]["restated"] == [{"day": "2026-11-12", "first_loaded_usd": 10.0, "now_usd": 14.2}]


def test_a_window_after_the_data_ends_says_where_the_data_stops(polo_home):
    with polo_store() as store:
        load(store, "cost_aws", day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 19)))  # through the 18th
        later = completeness(store, dt.date(2026, 11, 23), dt.date(2026, 11, 30), today=TODAY)
    (gap,) = later.gaps
    assert gap.beyond == tuple(day_range(dt.date(2026, 11, 23), dt.date(2026, 11, 30))) and gap.last_day == dt.date(2026, 11, 18)
    assert not later.complete and later.has_missing
    assert (
        later.words("this week")
        == "cost_aws: 2026-11-23..29 not collected yet (the data ends 2026-11-18): figures for this week are incomplete"
    )
    assert later.as_json()["collectors"][0]["not_collected_yet"] == [["2026-11-23", "2026-11-29"]]
