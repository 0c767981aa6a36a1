"""Hierarchies the organisation already declares, with no hierarchy file: its AWS Organization (moto) and the cost
categories of its export; and which hierarchy file applies when."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pandas as pd
import pytest
import yaml
from moto import mock_aws

from polo_pipelines.drilldown import delta
from polo_pipelines.drilldown.service import DrillDown
from polo_pipelines.errors import PoloInputError
from polo_pipelines.hierarchy import ancestry as hy
from polo_pipelines.hierarchy.rollup import rebuild_node_rollup
from polo_pipelines.sources.aws.organization import read_organization, write_organization
from polo_pipelines.store.events import cost_events, day_range, replace_days

NOW = dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC)
PERIODS = delta.Periods(dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 2), dt.date(2026, 11, 9))


@pytest.fixture
def organization(monkeypatch):
    """An organization in moto: Workloads/Prod holds the shop account, Workloads/Dev holds two accounts both named
    "dev", Sandbox holds a tagged account; the management account sits at the root."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("organizations", region_name="us-east-1")
        client.create_organization(FeatureSet="ALL")
        root = client.list_roots()["Roots"][0]["Id"]

        def unit(parent: str, name: str) -> str:
            return client.create_organizational_unit(ParentId=parent, Name=name)["OrganizationalUnit"]["Id"]

        def account(name: str, parent: str, tags=()) -> str:
            made = client.create_account(Email=f"{name}-{parent}@example.com", AccountName=name)["CreateAccountStatus"]["AccountId"]
            client.move_account(AccountId=made, SourceParentId=root, DestinationParentId=parent)
            if tags:
                client.tag_resource(ResourceId=made, Tags=[{"Key": k, "Value": v} for k, v in tags])
            return made

        workloads = unit(root, "Workloads")
        prod, dev, sandbox = unit(workloads, "Prod"), unit(workloads, "Dev"), unit(root, "Sandbox")
        ids = {
            "shop": account("shop", prod),
            "dev-a": account("dev", dev),
            "dev-b": account("dev", dev),
            "lab": account("lab", sandbox, tags=[("cost-center", "R&D")]),
        }
        yield client, ids


def test_the_organization_is_read_with_its_paths_names_and_tags(organization):
    client, ids = organization
    frame = read_organization(client, NOW)
    by_id = frame.set_index("account_id")
    assert list(by_id.loc[ids["shop"], "ou_names"]) == ["Workloads", "Prod"]
    assert list(by_id.loc[ids["lab"], "ou_names"]) == ["Sandbox"] and by_id.loc[ids["lab"], "tags"] == {"cost-center": "R&D"}
    management = frame[frame["ou_names"].map(len) == 0]
    assert len(management) == 1  # the management account, at the root
    assert len(frame) == 5 and (frame["account_status"] == "ACTIVE").all()


def test_an_account_outside_any_organization_gets_a_clear_error(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        with pytest.raises(PoloInputError, match="not in an organization") as info:
            read_organization(boto3.client("organizations", region_name="us-east-1"), NOW)
    assert (info.value.source, info.value.field) == ("aws-organization", "list_roots")


def ec2_costs(rows: list[tuple[str, str, dict, float, dt.date]]) -> pd.DataFrame:
    """Daily cost events of EC2 instances: (account, instance id, properties, USD, day) each."""
    return cost_events(
        resource_arn=[f"arn:aws:ec2:us-east-1:{r[0]}:instance/{r[1]}" for r in rows],
        resource_type="ec2:instance",
        resource_name=[r[1] for r in rows],
        day=pd.to_datetime([r[4] for r in rows]),
        charge_category="Usage",
        value=[r[3] for r in rows],
        billed_cost=[r[3] for r in rows],
        list_cost=[r[3] for r in rows],
        service="AmazonEC2",
        provider="AWS",
        properties=[r[2] for r in rows],
        collector="cost_aws",
        aws_account_id=[r[0] for r in rows],
        aws_region="us-east-1",
    )


def _costs(store, ids: dict[str, str]) -> None:
    """A daily cost per account's instance, with the export's cost categories; the shop grows in the current week."""
    days = day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 16))
    plan = [
        ("shop", "i-shop", {"cost_category:Team": "checkout"}, lambda d: 40.0 if d >= PERIODS.current_start else 10.0),
        ("dev-a", "i-deva", {"cost_category:Team": "search"}, lambda d: 5.0),
        ("dev-b", "i-devb", {}, lambda d: 3.0),
        ("lab", "i-lab", {"cost_category:Team": "research"}, lambda d: 2.0),
    ]
    frame = ec2_costs([(ids[a], rid, props, cost(d), d) for a, rid, props, cost in plan for d in days])
    replace_days(store, frame, collector="cost_aws", days=days, source="test")


def test_with_no_hierarchy_file_the_drill_down_ranks_ous_accounts_and_cost_categories(store, organization):
    client, ids = organization
    write_organization(store, read_organization(client, NOW))
    _costs(store, ids)
    hy.refresh(store, hy.load(hy.DEFAULT_FILE))
    rebuild_node_rollup(store)

    held = set(store.query_df("SELECT DISTINCT hierarchy FROM polo.resource_ancestry")["hierarchy"])
    assert held == {"platform", "aws_account", "aws_organization", "aws_account_tag_cost_center", "cost_category_team"}
    tagged = store.query_df(
        "SELECT ancestor_id, depth FROM polo.resource_ancestry WHERE hierarchy = 'aws_account_tag_cost_center' ORDER BY resource_arn, depth"
    )
    assert tagged["ancestor_id"].tolist() == ["cost_center:R&D", "account:lab"]  # only the tagged account's resources
    chain = store.query_df(
        "SELECT ancestor_id FROM polo.resource_ancestry WHERE hierarchy = 'aws_organization' AND resource_arn LIKE '%i-shop' ORDER BY depth"
    )["ancestor_id"].tolist()
    assert chain[0].startswith("root:") and chain[1:] == ["ou:Workloads", "ou:Workloads/Prod", "account:shop"]
    # two accounts of one name stay apart; the default account hierarchy takes its names from the Organization
    accounts = set(store.query_df("SELECT DISTINCT ancestor_id FROM polo.resource_ancestry WHERE hierarchy = 'aws_account'")["ancestor_id"])
    assert {"account:shop", f"account:dev ({ids['dev-a']})", f"account:dev ({ids['dev-b']})", "account:lab"} <= accounts

    drill = DrillDown(store)
    top = {n.node_id: n.delta for n in drill.nodes("aws_organization", PERIODS)}
    assert top["ou:Workloads"] == pytest.approx(210.0)  # the shop: +$30 a day for 7 days
    under = {n.node_id for n in drill.nodes("aws_organization", PERIODS, parent="ou:Workloads")}
    assert "ou:Workloads/Prod" in under
    teams = {n.node_id: n.delta for n in drill.nodes("cost_category_team", PERIODS)}
    assert teams["team:checkout"] == pytest.approx(210.0)
    assert all(node.split(":", 1)[1] for node in teams)  # an uncategorized resource makes no empty node
    causes = [c.node_id for c in drill.causes(PERIODS)]
    assert causes == ["account:shop"]  # the most concrete node, and the shop's delta is counted once


def test_the_sample_worlds_hierarchy_applies_only_to_the_sample_world(monkeypatch, tmp_path):
    monkeypatch.delenv("POLO_HIERARCHY_FILE", raising=False)
    assert hy.hierarchy_file() == hy.SAMPLE_FILE  # nothing configured: the sample world is what is collected
    assert "marqo_logical" in hy.load()
    monkeypatch.setenv("POLO_FOCUS_URI", str(tmp_path / "focus.csv"))
    assert hy.hierarchy_file() == hy.DEFAULT_FILE  # a real source: only what every organisation has
    assert set(hy.load()) == {"platform", "aws_account"}
    monkeypatch.delenv("POLO_FOCUS_URI")
    monkeypatch.setenv("POLO_SAMPLE", "0")
    assert hy.hierarchy_file() == hy.DEFAULT_FILE
    monkeypatch.setenv("POLO_HIERARCHY_FILE", str(tmp_path / "mine.yaml"))
    assert hy.hierarchy_file() == tmp_path / "mine.yaml"


def test_hierarchy_suggest_proposes_the_datas_own_tag_keys_nested_where_they_nest(store, monkeypatch, capsys):
    from polo_pipelines.cli import main as cli
    from polo_pipelines.hierarchy import suggest

    days = day_range(dt.date(2026, 11, 1), dt.date(2026, 11, 8))
    # (resource, $ a day, tags): teams lie within departments; "owner" covers little; Name is an identifier
    plan = [
        ("i-1", 40.0, {"department": "retail", "team": "checkout", "owner": "ann"}),
        ("i-2", 30.0, {"department": "retail", "team": "search"}),
        ("i-3", 20.0, {"department": "platform", "team": "infra"}),
        ("i-4", 6.0, {"department": "platform", "team": "data"}),
        ("i-5", 4.0, {}),
    ]
    frame = ec2_costs(
        [
            ("111111111111", rid, {**{f"tag:{k}": v for k, v in tags.items()}, "tag:Name": f"box-{rid}"}, usd, d)
            for rid, usd, tags in plan
            for d in days
        ]
    )
    replace_days(store, frame, collector="cost_aws", days=days, source="test")
    monkeypatch.setattr(suggest, "MAX_VALUES", 4)  # five Name values: an identifier here

    found = suggest.suggest(store)
    coverage = dict(zip(found.keys["key"], found.keys["coverage"].round(3)))
    assert coverage == {"Name": 1.0, "department": 0.96, "team": 0.96, "owner": 0.4}
    assert found.hierarchies == {
        "department_team": {
            "description": "department → team → resource, from the tags (proposed)",
            "levels": [{"type": "department", "tag": "department"}, {"type": "team", "tag": "team"}],
            "unassigned": "department:untagged",
        },
    }
    reasons = found.keys.set_index("key")["reason"].to_dict()
    assert reasons == {"Name": "over 4 values: an identifier", "department": "", "team": "", "owner": "one value only"}

    # the command prints a hierarchy file that loads as it is
    assert cli.main(["hierarchy", "suggest", "--min-coverage", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "#   department: 96.0% of cost, 2 value(s)\n" in text
    assert "#   owner: 40.0% of cost, 1 value(s) - not proposed: covers under 50%" in text
    proposed = hy.parse(yaml.safe_load(text))
    assert list(proposed) == ["platform", "aws_account", "department_team"]


def test_azure_resources_roll_up_by_subscription_and_resource_group(store):
    A, B = "aaaa1111-0000-4000-8000-000000000001", "bbbb2222-0000-4000-8000-000000000002"
    days = day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 4))
    ids = [
        "/subscriptions/AAAA1111-0000-4000-8000-000000000001/resourceGroups/Prod/providers/Microsoft.Compute/virtualMachines/vm1",
        "/subscriptions/aaaa1111-0000-4000-8000-000000000001/resourcegroups/prod/providers/Microsoft.Storage/storageAccounts/st1",
        "/subscriptions/bbbb2222-0000-4000-8000-000000000002/resourceGroups/prod/providers/Microsoft.Compute/virtualMachines/vm2",
        "/subscriptions/bbbb2222-0000-4000-8000-000000000002/providers/Microsoft.Billing/reservations/r1",  # no resource group: under its subscription
    ]
    rows = [(rid, d) for rid in ids for d in days]
    frame = cost_events(
        resource_arn=[r[0] for r in rows],
        resource_type="resource",
        resource_name=[r[0].rsplit("/", 1)[-1] for r in rows],
        day=pd.to_datetime([r[1] for r in rows]),
        charge_category="Usage",
        value=1.0,
        billed_cost=1.0,
        list_cost=1.0,
        service="Virtual Machines",
        provider="Microsoft",
        properties=[{}] * len(rows),
        collector="cost_azure",
    )
    replace_days(store, frame, collector="cost_azure", days=days, source="test")
    hy.refresh(store, hy.load(hy.DEFAULT_FILE))
    got = store.query_df(
        "SELECT resource_arn, groupArray(ancestor_id) AS chain FROM "
        "(SELECT * FROM polo.resource_ancestry WHERE hierarchy = 'azure_resource_group' ORDER BY depth) GROUP BY resource_arn"
    )
    chains = {arn.rsplit("/", 1)[-1]: list(chain) for arn, chain in zip(got["resource_arn"], got["chain"])}
    assert chains == {
        "vm1": [f"subscription:{A}", "resource_group:prod (sub aaaa1111)"],
        "st1": [f"subscription:{A}", "resource_group:prod (sub aaaa1111)"],  # Azure ids' case differs; the group is one
        "vm2": [f"subscription:{B}", "resource_group:prod (sub bbbb2222)"],  # the same name elsewhere is another group
        "r1": [f"subscription:{B}"],
    }


def test_gcp_projects_roll_up_by_folder_and_organization_from_the_exports_ancestry(store):
    from polo_pipelines.sources.gcp import client as gcp
    from polo_pipelines.sources.gcp.sample import GcpSample

    sample = GcpSample(dt.date(2026, 11, 1), dt.date(2026, 11, 4), seed=1)
    records = sample.query_result(dt.date(2026, 11, 1), dt.date(2026, 11, 3), detailed=True)
    records = [{**r, "day": dt.date.fromisoformat(r["day"])} for r in records]  # as the BigQuery client types them
    events = gcp.normalize(records, dt.date(2026, 11, 1), dt.date(2026, 11, 4), "2026-11-01")
    assert (events["resource_arn"] == "gcp:billing-account/invoice").any()
    replace_days(store, events, collector="cost_gcp", days=day_range(dt.date(2026, 11, 1), dt.date(2026, 11, 4)), source="test")
    hy.refresh(store, hy.load(hy.DEFAULT_FILE))
    got = store.query_df(
        "SELECT resource_arn, groupArray(ancestor_id) AS chain FROM "
        "(SELECT * FROM polo.resource_ancestry WHERE hierarchy = 'gcp_project' ORDER BY depth) GROUP BY resource_arn"
    )
    chains = {arn.rsplit("/", 1)[-1]: list(chain) for arn, chain in zip(got["resource_arn"], got["chain"])}
    data = ["organization:example.com", "folder:Data"]
    assert chains["trainer-1"] == [*data, "folder:Data/Machine learning", "project:ml-training"]
    assert chains["bigquery"] == [*data, "project:analytics"]  # gcp:analytics/bigquery, a service-level line
    assert "invoice" not in chains  # a row of no project has no ancestry: not in this hierarchy
    # the other way round, the same chain; anything else is named
    reversed_ = json.dumps(list(reversed(json.loads(records[0]["project_ancestors"]))))
    assert gcp.ancestry_property(reversed_, None) == gcp.ancestry_property(records[0]["project_ancestors"], None)
    with pytest.raises(PoloInputError) as info:
        gcp.ancestry_property('{"not": "a list"}', "2026-11-02")
    assert info.value.field == "project.ancestors"
