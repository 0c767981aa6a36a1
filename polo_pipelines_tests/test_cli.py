"""The polo command: the make-run path end to end, and the summary checked against the world's own charges."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from polo_pipelines import cli, sample
from polo_pipelines.sample.world import SampleWorld
from polo_pipelines.summary import last_complete_weeks

from .conftest import TODAY


def effective(item) -> float:
    if item.line_item_type == "SavingsPlanCoveredUsage":
        return item.sp_effective
    if item.line_item_type == "SavingsPlanNegation":
        return 0.0
    if item.line_item_type == "SavingsPlanRecurringFee":
        return item.sp_commitment - item.sp_used
    return item.unblended


def test_summary_matches_the_worlds_charges(polo_home, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    sample.write_sample(end=TODAY)
    start, end = sample.sample_window()
    assert cli.run_collection(start, end).success
    assert cli.main(["summary", "--today", TODAY.isoformat(), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    (a0, a1), (b0, b1) = last_complete_weeks(TODAY)
    want = defaultdict(lambda: [0.0, 0.0])
    for item in SampleWorld(TODAY).line_items():
        if a0 <= item.day < a1:
            want[item.account][0] += effective(item)
        elif b0 <= item.day < b1:
            want[item.account][1] += effective(item)
    got = {row["account"]: (row["previous_week"], row["last_week"]) for row in report["accounts"]}
    assert set(got) == set(want) == {"111111111111", "222222222222", "333333333333"}
    for account, (prev, last) in want.items():
        assert got[account][0] == pytest.approx(prev, abs=1e-6)
        assert got[account][1] == pytest.approx(last, abs=1e-6)
    services = {row["service"] for row in report["services"]}
    assert {"AmazonEC2", "AmazonRDS", "AmazonS3", "AWSDataTransfer"} <= services


def test_run_prints_the_summary_and_where_data_lives(polo_home, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli.main(["run"]) == 0
    out = capsys.readouterr().out
    assert "Per account" in out and "Per service" in out
    assert "111111111111" in out and "AmazonEC2" in out
    assert f"chdb://{polo_home / 'clickhouse'}" in out
    assert "cost_aws" in out
    assert cli.main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["collectors"][0]["collector"] == "cost_aws" and status["collectors"][0]["days"] == 56


def test_bad_dates_are_refused_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["summary", "--today", "22/11/2026"])
    assert info.value.code == 2
    assert "not a date" in capsys.readouterr().err
