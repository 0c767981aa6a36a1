"""Every enabled rule of the rule file as an asset check on the asset it watches, run after each evaluation."""

import dagster as dg
import pandas as pd

from polo_pipelines.defs.collection.factory import markdown_table
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.rules import evaluate
from polo_pipelines.rules import ruleset as rules

SEVERITY = {"critical": dg.AssetCheckSeverity.ERROR, "warning": dg.AssetCheckSeverity.WARN, "info": dg.AssetCheckSeverity.WARN}


def check_name(rule: rules.Rule) -> str:
    return "rule_" + rule.rule_id.replace("-", "_").replace(".", "_")


def rule_specs(rule_list: list[rules.Rule]) -> dict[dg.AssetCheckKey, rules.Rule]:
    return {dg.AssetCheckKey(dg.AssetKey(r.watched_asset), check_name(r)): r for r in rule_list if r.enabled}


def build_rule_checks(rule_list: list[rules.Rule]) -> dg.AssetChecksDefinition:
    by_key = rule_specs(rule_list)
    specs = [
        dg.AssetCheckSpec(
            check_name(r),
            asset=r.watched_asset,
            description=f"{r.name} [{r.rule_type}, {r.severity}, {r.scope_label}]",
            additional_deps=["rule_violations"],
        )
        for r in by_key.values()
    ]

    @dg.multi_asset_check(specs=specs, can_subset=True, name="budget_rule_checks", pool="rules")
    def budget_rule_checks(context: dg.AssetCheckExecutionContext, clickhouse: ClickHouseResource):
        """The latest evaluation's open violations of each rule: pass when none, else fail with the rule's severity."""
        with clickhouse.session() as store:
            open_now = evaluate.violations(store, state="open", limit=100_000)
        for key in context.selected_asset_check_keys:
            rule = by_key[key]
            mine = open_now[open_now["rule_id"] == rule.rule_id]
            table = pd.DataFrame(
                {
                    "entity": [a or n for a, n in zip(mine["resource_arn"], mine["node_id"])],
                    "actual": mine["actual_value"].round(4),
                    "threshold": mine["threshold_value"],
                    "since": mine["detected_at"].astype(str),
                }
            ).head(25)
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=mine.empty,
                severity=SEVERITY[rule.severity],
                metadata={
                    "open_violations": len(mine),
                    "rule_type": rule.rule_type,
                    "scope": rule.scope_label,
                    "offending": dg.MetadataValue.md(markdown_table(table)),
                },
            )

    return budget_rule_checks


RULES = rules.load()
budget_rule_checks = build_rule_checks(RULES)
