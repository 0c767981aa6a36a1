"""GitHub: runner prices, per-workflow Actions costs reconciled to the billing report, and the failure paths."""

from __future__ import annotations

import datetime as dt
import json
import logging

import dagster as dg
import pandas as pd
import pytest
from werkzeug import Response

from polo_pipelines.defs.collection.assets import COLLECTORS
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.github import client as github
from polo_pipelines.sources.github.sample import ORG, SPIKE_AUTHOR, SPIKE_COMMIT, SPIKE_REPO, SPIKE_WORKFLOW
from polo_pipelines.sources.github.source import GithubSource
from polo_pipelines.sources.http import ApiClient, RetryPolicy, SourceUnavailable
from polo_pipelines.sources.sample.platforms import PlatformSample
from polo_pipelines.sources.sample.server import SAMPLE_TOKEN
from polo_pipelines.store import polo_store
from polo_pipelines.store.events import property_dicts
from polo_pipelines_tests.conftest import TODAY

github_cost_events = COLLECTORS["github"]

END = TODAY - dt.timedelta(days=TODAY.weekday())  # the world ends on a Monday: the last complete week is whole
START = END - dt.timedelta(days=56)
TOKEN = "ghp_NEVERSHOWN0987654321"


@pytest.fixture(scope="module")
def world():
    return PlatformSample(START, END)


def sample_api(world, partition="test") -> github.GithubApi:
    server = world.serve()
    client = ApiClient("github", headers={**github.HEADERS, "Authorization": f"Bearer {SAMPLE_TOKEN}"}, partition=partition)
    return github.GithubApi(client, ORG, f"{server.url}/github")


def test_runner_types_and_dated_prices():
    assert github.runner_type(["ubuntu-latest"]) == ("linux", 2)
    assert github.runner_type(["ubuntu-latest-4-cores"]) == ("linux", 4)
    assert github.runner_type(["windows-2022", "8-core"]) == ("windows", 8)
    assert github.runner_type(["macos-14-xlarge"]) == ("macos-xlarge", 0)
    assert github.runner_type(["self-hosted", "linux", "gpu"]) == ("self-hosted", 0)
    assert github.price_per_minute("linux", 2, dt.date(2025, 12, 31)) == 0.008
    assert github.price_per_minute("linux", 2, dt.date(2026, 1, 1)) == 0.006
    assert github.price_per_minute("linux", 4, dt.date(2026, 3, 1)) == pytest.approx(0.012)
    assert github.price_per_minute("self-hosted", 0, dt.date(2026, 3, 1)) == 0.0
    assert github.strip_ref(".github/workflows/ci.yml@refs/heads/main") == ".github/workflows/ci.yml"
    assert github.report_day("2026-11-03T00:00:00Z") == dt.date(2026, 11, 3)


def test_jobs_round_up_per_job_and_count_on_their_start_day():
    rows = [
        (
            "r",
            ".github/workflows/ci.yml",
            "CI",
            "a",
            1,
            "2026-11-02T23:59:30Z",
            "2026-11-03T00:00:31Z",
            ("ubuntu-latest",),
        ),  # 61 s -> 2 min
        ("r", ".github/workflows/ci.yml", "CI", "a", 1, "2026-11-03T10:00:00Z", "2026-11-03T10:00:01Z", ("ubuntu-latest",)),  # 1 s -> 1 min
        ("r", ".github/workflows/ci.yml", "CI", "a", 2, "2026-11-03T11:00:00Z", "2026-11-03T11:10:00Z", ("windows-latest",)),  # 10 min
    ]
    frame = github.workflow_costs(rows, dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert len(frame) == 1  # the job started on the 2nd belongs to the 2nd, outside the window
    row = frame.iloc[0]
    assert row["minutes"] == 11 and row["jobs"] == 2 and row["runs"] == 2
    assert row["list_cost"] == pytest.approx(1 * 0.006 + 10 * 0.010)


def test_each_day_adds_up_to_the_billing_report(world):
    start, end = END - dt.timedelta(days=14), END
    window = github.collect(sample_api(world), start, end)
    events = window.events[window.events["event_type"] == "cost"]  # the workflows' metrics and commits are no cost
    per_day = events.groupby(events["event_time"].dt.date)["value"].sum()
    for day, total in per_day.items():
        report = sum(i["netAmount"] for i in world.data("github").usage_items(day))
        assert total == pytest.approx(report, abs=1e-6), day
    workflows = events[events["resource_type"] == "workflow"]
    assert workflows["resource_arn"].str.startswith(f"github:{ORG}/actions/workflow/").all()
    assert f"github:{ORG}/actions/workflow/search/e2e.yml" in set(workflows["resource_arn"])
    # runs deleted before collection (3% of api's Linux minutes) show as unattributed, not lost
    unattributed = events[events["resource_type"] == "actions_unattributed"]
    assert set(unattributed["resource_arn"]) == {f"github:{ORG}/actions/unattributed/api"}
    assert (unattributed["value"] > 0).all()
    assert window.jobs > 0 and window.runs > 0 and window.repositories == 6
    props = property_dicts(workflows.head(1))[0]
    assert {"repository", "workflow_path", "runs", "jobs", "minutes", "list_usd"} <= set(props)


def test_the_ci_spike_is_one_workflow_in_the_last_complete_week(world):
    window = github.collect(sample_api(world), END - dt.timedelta(days=14), END)
    events = window.events
    workflow = events[events["resource_arn"] == f"github:{ORG}/actions/workflow/{SPIKE_REPO}/{SPIKE_WORKFLOW}"]
    spike = workflow[workflow["event_type"] == "cost"]
    monday = END - dt.timedelta(days=7)
    last = spike[spike["event_time"].dt.date >= monday]["value"].sum()
    before = spike[spike["event_time"].dt.date < monday]["value"].sum()
    assert last > 300 and last > 8 * before
    # what the timeline joins to it: the runs, minutes and matrix size of each day, and the commit that began it
    metrics = workflow[workflow["event_type"] == "metric"].pivot_table(
        index=workflow["event_time"].dt.date, columns="event_action", values="value"
    )
    assert (metrics.loc[metrics.index >= monday, "runs"] == 60).all() and (metrics.loc[metrics.index >= monday, "matrix size"] == 4).all()
    assert (metrics.loc[metrics.index < monday, "matrix size"] == 2).all() and (metrics.loc[metrics.index < monday, "runs"] <= 4).all()
    (commit,) = workflow[workflow["event_type"] == "config"].itertuples()
    assert commit.actor_name == SPIKE_AUTHOR and commit.event_time == pd.Timestamp(monday) + pd.Timedelta(hours=8, minutes=30)
    assert dict(commit.properties)["summary"] == f"{SPIKE_COMMIT} (9f3c2e1)"
    # 60 runs a day: two pages of runs per repository and day, all of them read
    assert window.runs >= 7 * 60


def test_search_cap_splits_the_range(httpserver):
    def handler(request):
        since, until = (dt.datetime.fromisoformat(v.replace("Z", "+00:00")) for v in request.args["created"].split(".."))
        total = 1500 if until - since > dt.timedelta(hours=13) else 400
        return Response(json.dumps({"total_count": total, "workflow_runs": []}), content_type="application/json")

    httpserver.expect_request(f"/repos/{ORG}/big/actions/runs").respond_with_handler(handler)
    client = ApiClient("github", partition="p")
    api = github.GithubApi(client, ORG, httpserver.url_for(""))
    since = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    api.runs("big", since, since + dt.timedelta(days=1) - dt.timedelta(seconds=1))
    ranges = [r.args["created"] for r, _ in httpserver.log]
    assert len(ranges) == 3  # the whole day (over the cap), then its two halves


def _usage_payload(drop: str | None = None) -> dict:
    item = {
        "date": "2026-11-03T00:00:00Z",
        "product": "Actions",
        "sku": "actions_linux",
        "quantity": 100,
        "unitType": "Minutes",
        "pricePerUnit": 0.006,
        "grossAmount": 0.6,
        "discountAmount": 0.0,
        "netAmount": 0.6,
        "organizationName": ORG,
        "repositoryName": "",
    }
    if drop:
        item.pop(drop)
    return {"usageItems": [item]}


def live_source(httpserver) -> GithubSource:
    return GithubSource(org=ORG, api_url=httpserver.url_for("").rstrip("/"), token=TOKEN)


def test_payload_missing_a_field_fails_the_partition_and_writes_nothing(httpserver, polo_home):
    httpserver.expect_request(f"/organizations/{ORG}/settings/billing/usage").respond_with_json(_usage_payload(drop="netAmount"))
    result = dg.materialize(
        [github_cost_events],
        partition_key="2026-11-03",
        resources={"clickhouse": ClickHouseResource(), "github": live_source(httpserver)},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "usageItems[].netAmount" in message and "2026-11-03" in message and "source github" in message
    with polo_store() as store:
        assert store.query_df("SELECT count() AS n FROM polo.resource_events WHERE collector = 'cost_github'")["n"][0] == 0


def test_org_level_actions_lines_reconcile_against_all_repositories(httpserver):
    """A report that names no repository: workflows are fetched for every repository and reconciled per day."""
    httpserver.expect_request(f"/organizations/{ORG}/settings/billing/usage").respond_with_json(_usage_payload())
    httpserver.expect_request(f"/orgs/{ORG}/repos").respond_with_json([{"name": "solo"}])
    httpserver.expect_request(f"/repos/{ORG}/solo/actions/runs").respond_with_json(
        {
            "total_count": 1,
            "workflow_runs": [{"id": 9, "name": "CI", "path": ".github/workflows/ci.yml@refs/heads/x", "actor": {"login": "zed"}}],
        }
    )
    httpserver.expect_request(f"/repos/{ORG}/solo/actions/runs/9/jobs").respond_with_json(
        {
            "total_count": 1,
            "jobs": [{"started_at": "2026-11-03T10:00:00Z", "completed_at": "2026-11-03T11:00:00Z", "labels": ["ubuntu-latest"]}],
        }
    )
    httpserver.expect_request(
        f"/repos/{ORG}/solo/commits",
        query_string={
            "path": ".github/workflows/ci.yml",
            "since": "2026-11-03T00:00:00Z",
            "until": "2026-11-03T23:59:59Z",
            "per_page": "100",
        },
    ).respond_with_json([])
    api = live_source(httpserver).api("2026-11-03")
    events = github.collect(api, dt.date(2026, 11, 3), dt.date(2026, 11, 4)).events
    costs = events[events["event_type"] == "cost"]
    by_id = costs.set_index("resource_arn")["value"].to_dict()
    assert by_id[f"github:{ORG}/actions/workflow/solo/ci.yml"] == pytest.approx(0.36)  # 60 min x $0.006
    assert by_id[f"github:{ORG}/actions/unattributed"] == pytest.approx(0.24)
    assert sum(by_id.values()) == pytest.approx(0.6)
    metrics = events[events["event_type"] == "metric"].set_index("event_action")["value"].to_dict()
    assert metrics == {"runs": 1.0, "minutes": 60.0, "matrix size": 1.0}

    # a commit without its author's date is refused, naming the field
    httpserver.clear()
    httpserver.expect_request(f"/organizations/{ORG}/settings/billing/usage").respond_with_json(_usage_payload())
    httpserver.expect_request(f"/orgs/{ORG}/repos").respond_with_json([{"name": "solo"}])
    httpserver.expect_request(f"/repos/{ORG}/solo/actions/runs").respond_with_json(
        {"total_count": 1, "workflow_runs": [{"id": 9, "name": "CI", "path": ".github/workflows/ci.yml", "actor": {"login": "zed"}}]}
    )
    httpserver.expect_request(f"/repos/{ORG}/solo/actions/runs/9/jobs").respond_with_json(
        {
            "total_count": 1,
            "jobs": [{"started_at": "2026-11-03T10:00:00Z", "completed_at": "2026-11-03T11:00:00Z", "labels": ["ubuntu-latest"]}],
        }
    )
    httpserver.expect_request(f"/repos/{ORG}/solo/commits").respond_with_json([{"sha": "abc", "commit": {"message": "x"}}])
    with pytest.raises(PoloInputError) as err:
        github.collect(live_source(httpserver).api("2026-11-03"), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert err.value.field == "commits[].commit.author.date" and err.value.partition == "2026-11-03"


def test_the_token_never_appears_in_logs_or_errors(httpserver, caplog):
    httpserver.expect_request(f"/organizations/{ORG}/settings/billing/usage").respond_with_json(
        {"message": f"token {TOKEN} is not allowed here"}, status=403
    )
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(PoloInputError) as raised:
            live_source(httpserver).collect(dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert "403" in str(raised.value)
    assert TOKEN not in str(raised.value) and TOKEN not in caplog.text
    request_headers = httpserver.log[0][0].headers
    assert request_headers["Authorization"] == f"Bearer {TOKEN}" and request_headers["X-GitHub-Api-Version"] == "2022-11-28"


def test_5xx_storm_stops_the_partition(httpserver):
    httpserver.expect_request(f"/organizations/{ORG}/settings/billing/usage").respond_with_data("oops", status=502)
    api = live_source(httpserver).api("2026-11-03")
    api.client.retry = RetryPolicy(attempts=3, base=0.01, cap=0.02)
    with pytest.raises(SourceUnavailable, match="2026-11-03"):
        github.collect(api, dt.date(2026, 11, 3), dt.date(2026, 11, 4))


def test_sample_collection_through_dagster_marks_sample_rows(polo_home):
    from polo_pipelines.sources import sample

    sample.write_sample(end=END)
    result = dg.materialize(
        [github_cost_events],
        partition_key=(END - dt.timedelta(days=2)).isoformat(),
        resources={"clickhouse": ClickHouseResource(), "github": GithubSource()},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("github_cost_events")[0].metadata
    assert metadata["dagster/row_count"].value > 5 and metadata["jobs"].value > 0
    with polo_store() as store:
        frame = store.query_df(
            "SELECT properties['source'] AS source, count() AS n FROM polo.resource_events WHERE collector = 'cost_github' GROUP BY source"
        )
    assert frame.to_dict("records") == [{"source": "sample", "n": metadata["dagster/row_count"].value}]


def test_an_unconfigured_platform_is_skipped_on_a_server_store(polo_home):
    server = ClickHouseResource(dsn="https://u:pw@ch.example.com/polo")  # never reached: nothing is read or written
    result = dg.materialize([github_cost_events], partition_key="2026-11-03", resources={"clickhouse": server, "github": GithubSource()})
    assert result.success and result.asset_materializations_for_node("github_cost_events") == []


def test_top_actors_by_jobs():
    frame = pd.DataFrame({"k": ["a"] * 6 + ["b"], "actor": ["x", "y", "y", "z", "z", "z", ""]})
    assert github.top_actors(frame, ["k"], n=2).to_dict() == {"a": "z, y"}
