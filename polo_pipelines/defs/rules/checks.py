"""Every enabled rule of the rule file as an asset check on the asset it watches, run after each evaluation."""

import dagster as dg
import pandas as pd

from polo_pipelines.defs import metadata
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.rules import evaluate
from polo_pipelines.rules import ruleset as rules

SEVERITY = {"critical": dg.AssetCheckSeverity.ERROR, "warning": dg.AssetCheckSeverity.WARN, "info": dg.AssetCheckSeverity.WARN}


def check_name(rule: rules.Rule) -> str:
    return "rule_" + rule.rule_id.replace("-", "_").replace(".", "_")


def rule_specs(rule_list: list[rules.Rule]) -> dict[dg.AssetCheckKey, rules.Rule]:
    return {dg.AssetCheckKey(dg.AssetKey(r.watched_asset), check_name(r)): r for r in rule_list if r.enabled}


MONEY = ("value", "threshold")


def offending(rule: rules.Rule, mine: pd.DataFrame) -> pd.DataFrame:
    """A rule's open violations as its check shows them: a budget's month projection is named as one, never as
    the actual figure it is compared with (a projection of $2,352.34 is not $2,352.34 spent)."""
    projected = evaluate.violation_kinds(mine["message"]) == "projected"
    return pd.DataFrame(
        {
            "entity": [a or n for a, n in zip(mine["resource_arn"], mine["node_id"])],
            "measure": ["projected for the month" if p else "actual" for p in projected],
            "value": mine["actual_value"].round(4),
            "threshold": mine["threshold_value"],
            "since": pd.to_datetime(mine["detected_at"]).dt.strftime("%Y-%m-%d %H:%M UTC"),
            "message": mine["message"],
        }
    ).head(25)


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
            table = offending(rule, mine)
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=mine.empty,
                severity=SEVERITY[rule.severity],
                metadata={
                    "open_violations": len(mine),
                    "rule_type": rule.rule_type,
                    "scope": rule.scope_label,
                    "offending": metadata.table(table, money_cols=MONEY if rule.rule_type == "budget" else ()),
                },
            )

    return budget_rule_checks


def loaded_rules() -> tuple[list[rules.Rule], str]:
    """The rule file's rules, or none and why: a broken rule file must fail rule evaluation (its run and its
    rule_file_valid check say why), never take the code location down with every collector and schedule in it."""
    try:
        return rules.load(), ""
    except Exception as exc:
        return [], str(exc)


RULES, RULE_FILE_ERROR = loaded_rules()
budget_rule_checks = build_rule_checks(RULES)
