"""Cost Explorer mode against moto's Cost Explorer: pagination, Estimated days, credits on request."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
import requests
from moto import mock_aws

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.aws import cost_explorer
from polo_pipelines.store.events import property_dicts

START, END = dt.date(2026, 11, 2), dt.date(2026, 11, 4)


def group(account, key, amortized, unblended=None):
    unblended = amortized if unblended is None else unblended
    return {
        "Keys": [account, key],
        "Metrics": {"AmortizedCost": {"Amount": str(amortized), "Unit": "USD"}, "UnblendedCost": {"Amount": str(unblended), "Unit": "USD"}},
    }


def day(d, groups, estimated=False):
    return {"TimePeriod": {"Start": d, "End": d}, "Total": {}, "Groups": groups, "Estimated": estimated}


def queue(*results):
    """moto pops one queued response per distinct request body."""
    requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/ce/cost-and-usage-results",
        json={"results": list(results)},
    ).raise_for_status()


@pytest.fixture
def ce():
    with mock_aws():
        yield boto3.client("ce", region_name="us-east-1")


def test_pages_are_followed_and_estimated_days_flagged(ce):
    queue(
        {"ResultsByTime": [day("2026-11-02", [group("111", "Amazon EC2", 10.0, 12.0)])], "NextPageToken": "p2"},
        {"ResultsByTime": [day("2026-11-03", [group("111", "Amazon EC2", 11.0), group("222", "Amazon S3", 1.5)], estimated=True)]},
        {"ResultsByTime": [day("2026-11-02", [group("111", "Tax", 0.8), group("111", "Credit", -5.0)])]},
    )
    window = cost_explorer.collect(ce, START, END)
    events = window.events.assign(props=property_dicts(window.events)).set_index(["resource_arn", window.events["event_time"].dt.date])
    assert window.requests == 3
    assert events.loc[("aws:111/Amazon EC2/global", dt.date(2026, 11, 2)), "value"] == 10.0
    assert events.loc[("aws:111/Amazon EC2/global", dt.date(2026, 11, 2)), "billed_cost"] == 12.0
    assert events.loc[("aws:222/Amazon S3/global", dt.date(2026, 11, 3)), "props"]["estimated"] == "true"
    assert "estimated" not in events.loc[("aws:111/Amazon EC2/global", dt.date(2026, 11, 2)), "props"]
    assert sorted(window.events["charge_category"].unique()) == ["Credit", "Tax", "Usage"]
    assert window.events["value"].sum() == pytest.approx(10 + 11 + 1.5 + 0.8 - 5)


def test_requests_exclude_credits_on_request():
    requests_ = cost_explorer.requests_for(START, END, exclude_credits=True)
    assert requests_["usage"]["Filter"] == {"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund", "Tax"]}}}
    assert requests_["non_usage"]["Filter"]["Dimensions"]["Values"] == ["Tax"]
    assert requests_["usage"]["TimePeriod"] == {"Start": "2026-11-02", "End": "2026-11-04"}  # End is exclusive
    assert len(requests_["usage"]["GroupBy"]) == 2


def test_credits_left_out_when_asked(ce):
    queue(
        {"ResultsByTime": [day("2026-11-02", [group("111", "Amazon EC2", 10.0)])]},
        {"ResultsByTime": [day("2026-11-02", [group("111", "Tax", 1.0), group("111", "Credit", -3.0)])]},
    )
    events = cost_explorer.collect(ce, START, START + dt.timedelta(days=1), exclude_credits=True).events
    # moto does not apply the RECORD_TYPE filter; Polo keeps only the record types it asked for.
    assert sorted(events["charge_category"]) == ["Tax", "Usage"]
    assert events["value"].sum() == pytest.approx(11.0)


@pytest.mark.parametrize(
    "bad, field",
    [
        (
            {
                "Keys": ["111", "EC2"],
                "Metrics": {"AmortizedCost": {"Amount": "abc", "Unit": "USD"}, "UnblendedCost": {"Amount": "1", "Unit": "USD"}},
            },
            "Metrics.AmortizedCost.Amount",
        ),
        ({"Keys": ["111", "EC2"], "Metrics": {"UnblendedCost": {"Amount": "1", "Unit": "USD"}}}, "Metrics.AmortizedCost.Amount"),
        ({"Keys": ["111"], "Metrics": {}}, "Groups.Keys"),
        (
            {
                "Keys": ["111", "EC2"],
                "Metrics": {"AmortizedCost": {"Amount": "1", "Unit": "EUR"}, "UnblendedCost": {"Amount": "1", "Unit": "EUR"}},
            },
            "Metrics.UnblendedCost.Unit",
        ),
    ],
)
def test_malformed_groups_are_refused(bad, field):
    with pytest.raises(PoloInputError) as info:
        cost_explorer.normalize([day("2026-11-02", [bad])], kind="usage", partition="2026-11-02")
    assert info.value.field == field
    assert info.value.partition == "2026-11-02"
    assert info.value.source == cost_explorer.SOURCE
