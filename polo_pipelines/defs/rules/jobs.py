"""Evaluation jobs: cost rules hourly, state rules every 15 minutes after a fresh inventory snapshot."""

import dagster as dg

from polo_pipelines.defs.rules.checks import RULES, rule_specs


def _checks(cadence: str) -> list[dg.AssetCheckKey]:
    return [key for key, rule in rule_specs(RULES).items() if rule.cadence == cadence]


rules_hourly = dg.define_asset_job(
    "rules_hourly",
    selection=dg.AssetSelection.assets("budget_rules", "rule_violations") | dg.AssetSelection.checks(*_checks("hourly")),
    config={"ops": {"rule_violations": {"config": {"cadence": "hourly"}}}},
    description="Evaluate the budget and ratio rules, update violations, notify, and report each rule's asset check.",
)

rules_15min = dg.define_asset_job(
    "rules_15min",
    # the hierarchy between the snapshot and the evaluation: a rule scoped to a node (or filtered on a resource's
    # tags) must see the instance launched since the last snapshot, and compliance must count it under its nodes
    # and the spans' last 15 minutes priced before it, so a budget on an operation's 15 minutes sees them
    selection=dg.AssetSelection.assets(
        "aws_inventory_events", "otel_recent_costs", "resource_ancestry", "resources", "budget_rules", "rule_violations"
    )
    | dg.AssetSelection.checks(*_checks("15min")),
    config={"ops": {"rule_violations": {"config": {"cadence": "15min"}}}},
    description="Snapshot the AWS inventory, price the spans' last 15 minutes, place new resources in the hierarchies, evaluate the existence, config and lifecycle rules and the 15-minute budgets, notify, act, report their checks.",
)
