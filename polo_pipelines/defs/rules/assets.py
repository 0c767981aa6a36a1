"""The rule evaluator as an asset: polo.rule_violations, kept true on every evaluation."""

import datetime as dt

import dagster as dg

from polo_pipelines.defs import metadata
from polo_pipelines.defs.collection.factory import AsOfConfig
from polo_pipelines.defs.collection.tables import table_spec
from polo_pipelines.defs.rules.resources import RulesResource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.rules import evaluate, notify
from polo_pipelines.rules import ruleset as rules


class EvaluationConfig(AsOfConfig):
    cadence: str = "all"  # hourly (budget, ratio), 15min (existence, config, lifecycle) or all


def run_evaluation(store, rule_list: list[rules.Rule], cadence: str, at: dt.datetime, channels: notify.Channels):
    """Sync the rule file into polo.budget_rules, evaluate the cadence's rules, notify new violations, call the
    actions of those whose rule has one."""
    if cadence not in ("all", "hourly", "15min"):
        raise dg.Failure(description=f"cadence must be all, hourly or 15min, got {cadence!r}", allow_retries=False)
    rules.sync(store, rule_list, at)
    chosen = [r for r in rule_list if cadence == "all" or r.cadence == cadence]
    result = evaluate.evaluate(store, chosen, at)
    sent = notify.notify(store, rule_list, channels, at)
    acted = notify.act(store, rule_list, at)
    return result, sent, acted


@dg.multi_asset(
    name="rule_violations",
    specs=[
        table_spec(
            "budget_rules",
            "rules",
            [],
            "The rule file (config/rules.yaml) as the table the evaluations and the UI read, each rule's versions kept.",
        ),
        table_spec(
            "rule_violations",
            "rules",
            ["budget_rules", "resource_ancestry", "resources"],
            "Every enabled budget rule evaluated: violations opened, kept and resolved, new ones notified.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "rule_file_valid",
            asset="budget_rules",
            description="The rule file loads: fails (ERROR) naming the line and the reason when it does not, and nothing is evaluated",
        ),
        dg.AssetCheckSpec(
            "notifications_delivered",
            asset="rule_violations",
            description="Every new violation reached its channel: fails (WARN) when a send failed in this evaluation, "
            "(ERROR) when a violation has waited more than a day",
        ),
    ],
    pool="rules",
)
def rule_violations(context: dg.AssetExecutionContext, config: EvaluationConfig, clickhouse: ClickHouseResource, rules: RulesResource):
    """Sync the rule file into polo.budget_rules, then evaluate the rules into polo.rule_violations and notify."""
    try:
        rule_list = rules.load()
    except Exception as exc:  # a broken rule file names its line and reason; nothing is evaluated
        yield rule_file_check(rules.path(), str(exc))
        raise dg.Failure(description=f"the rule file is broken, no rule was evaluated: {exc}", allow_retries=False) from None
    yield rule_file_check(rules.path(), "", len(rule_list))
    at = config.moment()
    with clickhouse.session() as store:
        result, sent, acted = run_evaluation(store, rule_list, config.cadence, at, rules.channels())
        scores = evaluate.compliance(store)
        open_now = evaluate.violations(store, state="open", limit=1000)
        late = notify.overdue(store, at)
    by_severity = open_now.groupby("severity").size().to_dict() if not open_now.empty else {}
    context.log.info(f"{result.rules} rules at {at.isoformat()}: {result.opened} opened, {result.resolved} resolved, {sent.sent} notified")
    worst = scores[scores["open_violations"] > 0].head(15)
    yield dg.MaterializeResult(asset_key="budget_rules", metadata={"rules": len(rule_list), "enabled": sum(r.enabled for r in rule_list)})
    yield dg.MaterializeResult(
        asset_key="rule_violations",
        metadata={
            "as_of": at.isoformat(),
            "cadence": config.cadence,
            "rules_evaluated": result.rules,
            "opened": result.opened,
            "resolved": result.resolved,
            "still_open": result.persisting,
            "open_critical": int(by_severity.get("critical", 0)),
            "open_warning": int(by_severity.get("warning", 0)),
            "open_info": int(by_severity.get("info", 0)),
            "notified": sent.sent,
            "notification_failures": sent.failed,
            "actions_called": acted.sent,
            "action_failures": acted.failed,
            "evaluation_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
            "compliance": metadata.table(worst),
            "dagster/row_count": len(open_now),
        },
    )
    if sent.failed:
        context.log.warning(f"{sent.failed} notification(s) not sent (retried at the next evaluation): " + "; ".join(sent.errors[:5]))
    if acted.failed:
        context.log.warning(f"{acted.failed} action(s) not called (retried at the next evaluation): " + "; ".join(acted.errors[:5]))
    yield delivery_check(sent, late, acted)


def rule_file_check(path, error: str, count: int = 0) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key="budget_rules",
        check_name="rule_file_valid",
        passed=not error,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rule_file": str(path), "error": dg.MetadataValue.text(error or "-"), "rules": count},
    )


def delivery_check(sent: notify.Sent, late, acted: notify.Sent | None = None) -> dg.AssetCheckResult:
    """A notification (or a rule's action) that keeps failing must show: a failed check, not a green run forever."""
    acted = acted or notify.Sent()
    return dg.AssetCheckResult(
        asset_key="rule_violations",
        check_name="notifications_delivered",
        passed=not sent.failed and not acted.failed and late.empty,
        severity=dg.AssetCheckSeverity.ERROR if not late.empty else dg.AssetCheckSeverity.WARN,
        metadata={
            "sent": sent.sent,
            "failed": sent.failed,
            "actions_called": acted.sent,
            "actions_failed": acted.failed,
            "waiting_over_a_day": len(late),
            "errors": dg.MetadataValue.text("\n".join([*sent.errors, *acted.errors][:20]) or "-"),
        },
    )
