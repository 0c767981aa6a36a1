"""The ``polo`` command: set up the store, run the sample world end to end, and read the results."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from polo_pipelines.errors import PoloInputError
from polo_pipelines.store.storage import StoreError


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def cmd_migrate(args: argparse.Namespace) -> int:
    from polo_pipelines.settings import clickhouse_dsn
    from polo_pipelines.store.schema import migrate, schema_version
    from polo_pipelines.store.storage import open_store, parse_dsn
    from polo_pipelines.store.swap import repair

    with open_store(clickhouse_dsn()) as store:
        applied = migrate(store)
        version = schema_version(store)
        repaired = repair(store, exclusive=parse_dsn(clickhouse_dsn()).scheme == "chdb")
    where = parse_dsn(clickhouse_dsn()).redacted
    print(f"schema at version {version} in {where}" + (f" (applied {applied})" if applied else " (up to date)"))
    if repaired:
        print(
            f"repaired: {len(repaired.finished)} interrupted load(s) finished, {len(repaired.abandoned)} abandoned, "
            f"{len(repaired.dropped)} scratch table(s) dropped"
        )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from polo_pipelines.sources.sample import sample_window, write_sample

    root = write_sample(end=args.end or _today())
    start, end = sample_window(root)
    print(f"sample world {start}..{end - dt.timedelta(days=1)} written to {root}")
    return 0


def partition_range_allowed(start: dt.date, end: dt.date) -> None:
    """Days before POLO_START_DATE have no partition: say so, with the setting and the fix, before Dagster's own
    ``DagsterInvalidSubsetError`` (which names neither)."""
    from polo_pipelines.sources.sample import first_partition_day

    first = first_partition_day()
    if start < first:
        from polo_pipelines.sources.connections import days_held

        held = days_held()
        suggestion = max(start, min(first_day for first_day, _ in held.values())) if held else start
        holds = "; ".join(f"{collector} holds {a}..{b}" for collector, (a, b) in sorted(held.items()))
        fix = (
            f"set POLO_START_DATE={suggestion} or earlier, then reload the code location (make dev) so the partitions follow"
            if suggestion < first
            else f"the sources hold nothing before it: start the range at {first}"
        )
        raise ValueError(
            f"{start}..{min(end, first) - dt.timedelta(days=1)} is before POLO_START_DATE ({first}), the first day the "
            f"collectors' partitions hold{f' ({holds})' if holds else ''}: {fix}"
        )


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # a run's log stays in the instance


def dagster_instance():
    """The Dagster instance under DAGSTER_HOME (make sets it: runs show in the UI), else an ephemeral one."""
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def run_collection(start: dt.date, end: dt.date):
    """Run the daily collection job over [start, end) as one single-run backfill, recorded in the Dagster instance."""

    from polo_pipelines.definitions import defs

    partition_range_allowed(start, end)
    job = defs().resolve_job_def("daily_cost_collection")
    instance = dagster_instance()
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": (end - dt.timedelta(days=1)).isoformat(),
    }
    return job.execute_in_process(run_config=QUIET, instance=instance, tags=tags, raise_on_error=False)


def run_hierarchy_refresh():
    """Rebuild resource_ancestry and the node rollup through their Dagster job."""

    from polo_pipelines.definitions import defs

    job = defs().resolve_job_def("refresh_hierarchy")
    instance = dagster_instance()
    return job.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False)


def run_weekly_deltas(start: dt.date, end: dt.date):
    """Both weekly delta assets for every complete ISO week of [start, end), one run per week, as the weekly sensor
    requests them (so the UI shows every past week of the sample world, not the last one alone)."""

    from polo_pipelines.definitions import defs
    from polo_pipelines.defs.partitions import weekly_partitions

    job = defs().resolve_job_def("weekly_cost_deltas")
    instance = dagster_instance()
    now = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)
    return [
        job.execute_in_process(run_config=QUIET, instance=instance, partition_key=week, raise_on_error=False)
        for week in weekly_partitions.get_partition_keys(current_time=now)
        if week >= start.isoformat()
    ]


def _report_failures(result) -> int:
    for event in result.all_events:
        if event.is_step_failure:
            print(f"step failed: {event.step_key}: {event.event_specific_data.error.message.strip()}", file=sys.stderr)
    return 1


def cmd_run(args: argparse.Namespace) -> int:
    from polo_pipelines.sources.sample import sample_window, write_sample

    write_sample(end=_today())
    start, end = sample_window()
    spans = run_otel_sample()
    if spans is None:
        return 1
    print(f"Polo: collecting the sample world's costs {start}..{end - dt.timedelta(days=1)} (one backfill run)")
    result = run_collection(start, end)
    if not result.success:
        return _report_failures(result)
    result = run_hierarchy_refresh()
    if not result.success:
        return _report_failures(result)
    for result in run_weekly_deltas(start, end):
        if not result.success:
            return _report_failures(result)
    status = cmd_summary(args)
    if status or args.json:
        return status
    print()
    print("=" * 100)
    print("Why did costs move? (polo delta: the drill-down, last complete week vs the week before)")
    print()
    status = show_drilldown(args.today or _today())
    if status:
        return status
    status = show_rules(end)
    if status:
        return status
    return show_otel(spans)


SAMPLE_RULE_15MIN = "operation-15min-budget"


def run_otel_sample() -> dict | None:
    """The sample services' afternoon, exported with the OpenTelemetry SDK over OTLP/HTTP to Polo's receiver, then the
    15-minute evaluation as it runs right after the retry loop's window: the spans priced, the 15-minute budget
    evaluated, its action (the sample's throttle endpoint) called. What it found, for ``show_otel``."""
    import pandas as pd

    from polo_pipelines.rules import evaluate
    from polo_pipelines.sources.otel import costs
    from polo_pipelines.sources.otel import sample as otel_sample
    from polo_pipelines.sources.sample.platforms import serve_sample
    from polo_pipelines.store import polo_store

    world, _ = serve_sample()
    data = world.data("otel")
    names = ["storefront", "search", "assistant"]
    with polo_store() as store:  # a second `make run` replaces the sample services' day, never adds to it
        store.command(
            "ALTER TABLE polo.otel_traces DELETE WHERE toDate(Timestamp) = {day:Date} AND ServiceName IN {names:Array(String)} "
            "SETTINGS mutations_sync = 1",
            {"day": data.day, "names": names},
        )
    os.environ.setdefault("POLO_ACTION_WEBHOOK_THROTTLE", otel_sample.throttle_url())
    made = otel_sample.export_afternoon(data)
    with polo_store() as store:
        ((held,),) = store.query_rows(
            "SELECT count() FROM polo.otel_traces WHERE toDate(Timestamp) = {day:Date} AND ServiceName IN {names:Array(String)}",
            {"day": data.day, "names": names},
        )
    if held != made:
        print(f"the OTLP receiver stored {held} of the {made} spans the sample services exported", file=sys.stderr)
        return None
    storm = dt.datetime.combine(data.day, otel_sample.STORM[0], tzinfo=dt.UTC)
    at = storm + costs.BUCKET + dt.timedelta(seconds=30)
    for result in run_rule_jobs(at, cadences=("15min",)):
        if not result.success:
            _report_failures(result)
            return None
    with polo_store() as store:
        moved = costs.movers(store, storm)
        caught = evaluate.violations(store, state="all", limit=1000)
    caught = caught[(caught["rule_id"] == SAMPLE_RULE_15MIN) & (caught["detected_at"] == pd.Timestamp(at).tz_localize(None))]
    return {"day": data.day, "spans": made, "storm": storm, "at": at, "movers": moved, "caught": caught, "throttled": list(data.throttled)}


def show_otel(found: dict) -> int:
    """The sample services' story: the operation that moved within its 15 minutes, the rule that caught it and the
    throttle it called, then the day reconciled to the hosts' bills."""
    from polo_pipelines.cli.text import text_table, usd
    from polo_pipelines.sources.otel import reconcile
    from polo_pipelines.store import polo_store

    storm, at = found["storm"], found["at"]
    print()
    print("=" * 100)
    print(
        f"OpenTelemetry: {found['spans']:,} spans from 3 services (storefront, search, assistant), exported by the SDK over "
        f"OTLP/HTTP to polo otlp, priced every 15 minutes"
    )
    print()
    print(
        f"Which operation moved in the 15 minutes {storm:%Y-%m-%d %H:%M}-{storm + dt.timedelta(minutes=15):%H:%M} UTC (estimates, priced at {at:%H:%M:%S}):"
    )
    top = found["movers"].head(5).rename(columns={"resource_arn": "operation", "now": "this_15_min", "before": "15_min_before"})
    print(
        text_table(
            top[["operation", "15_min_before", "this_15_min", "change", "spans"]],
            money=("15_min_before", "this_15_min", "change"),
            signed=("change",),
        )
    )
    for row in found["caught"].sort_values("detected_at").itertuples(index=False):
        print(f"  caught by {row.rule_id} at {row.detected_at:%H:%M:%S} UTC: [{row.severity}] {row.message}")
    for call in found["throttled"]:
        print(
            f"  its action called the throttle endpoint once: {call.get('node') or call.get('resource')} (violation {call.get('violation_id')})"
        )
    with polo_store(reader=True) as store:
        hosts = reconcile.day_figures(store, found["day"])
    print()
    print(f"The next day the hosts' bill for {found['day']} landed, and the day's estimates were reconciled to it:")
    shown = hosts.assign(services_plus_idle=hosts["services"] + hosts["idle"]).rename(
        columns={"full_day": "day_at_list", "estimated": "spans_estimated", "services": "spans_reconciled"}
    )
    money = ("day_at_list", "billed", "spans_estimated", "spans_reconciled", "idle", "services_plus_idle")
    print(text_table(shown[["host", *money]], money=money))
    off = [h for h in hosts.itertuples(index=False) if h.reconciled and abs(h.services + h.idle - h.billed) >= 0.005]
    if off:
        print(f"reconciliation does not add up for {', '.join(h.host for h in off)}", file=sys.stderr)
        return 1
    listed, billed = float(hosts["full_day"].sum()), float(hosts["billed"].sum())
    print(
        f"  the hosts cost {usd(billed)} against {usd(listed)} at list price ({(billed / listed - 1) * 100:+.0f}%): the spans' share moves "
        f"from {usd(float(hosts['estimated'].sum()))} estimated to {usd(float(hosts['services'].sum()))}, the rest is each host's idle line"
    )
    return 0


def run_rule_jobs(as_of: dt.datetime, cadences: tuple[str, ...] = ("15min", "hourly")):
    """The inventory snapshot and both rule evaluations through their Dagster jobs, as of ``as_of``."""

    from polo_pipelines.definitions import defs

    instance = dagster_instance()
    results = []
    for name, cadence in (("rules_15min", "15min"), ("rules_hourly", "hourly")):
        if cadence not in cadences:
            continue
        ops = {"rule_violations": {"config": {"cadence": cadence, "as_of": as_of.isoformat()}}}
        if cadence == "15min":
            ops["aws_inventory_events"] = {"config": {"as_of": as_of.isoformat()}}
            ops["otel_recent_costs"] = {"config": {"as_of": as_of.isoformat()}}
        results.append(
            defs().resolve_job_def(name).execute_in_process(run_config={"ops": ops, **QUIET}, instance=instance, raise_on_error=False)
        )
    return results


def show_rules(end: dt.date) -> int:
    """Evaluate the budget rules on the sample world at its evening and print the violations and compliance scores."""
    from zoneinfo import ZoneInfo

    from polo_pipelines.cli.text import text_table
    from polo_pipelines.rules import evaluate
    from polo_pipelines.sources.aws.sample_inventory import reference_time
    from polo_pipelines.store import polo_store

    at = reference_time(end)
    for result in run_rule_jobs(at):
        if not result.success:
            return _report_failures(result)
    local = at.astimezone(ZoneInfo("Australia/Melbourne"))
    print()
    print("=" * 100)
    print(f"Budget rules (config/rules.yaml), evaluated as of {local:%a %Y-%m-%d %H:%M} Australia/Melbourne, after business hours")
    print()
    with polo_store() as store:
        open_now = evaluate.violations(store, state="open", limit=1000)
        scores = evaluate.compliance(store)
    per_rule = open_now.groupby(["severity", "rule_id"]).size().rename("open").reset_index().sort_values(["severity", "rule_id"])
    print(text_table(per_rule, ()))
    print()
    shown = open_now.assign(entity=[a or n for a, n in zip(open_now["resource_arn"], open_now["node_id"])])
    for row in shown.sort_values(["severity", "rule_id"]).head(12).itertuples(index=False):
        print(f"  [{row.severity}] {row.message}")
    print()
    print("Compliance (least compliant nodes of the logical and account hierarchies):")
    top = scores[scores["hierarchy"].isin(["marqo_logical", "aws_account"]) & (scores["open_violations"] > 0)].head(8)
    for row in top.itertuples(index=False):
        print(f"  {row.node_id}: {row.compliance_pct:g}% compliant, {row.open_violations} open violation(s)")
    return 0


def show_drilldown(today: dt.date) -> int:
    """The causes, Level 1 in every hierarchy, then Level 2 of the top cause and Level 3 of its top resource."""
    from polo_pipelines.cli import report
    from polo_pipelines.drilldown.periods import Periods, Settings
    from polo_pipelines.drilldown.service import DrillDown
    from polo_pipelines.store import polo_store

    periods, settings = Periods.last_complete_week(today), Settings()
    with polo_store() as store:
        service = DrillDown(store)
        overview = service.overview(periods, settings, limit=6)
        print(report.headline(overview.headline, periods))
        for line in report.completeness(service.completeness(periods)):
            print(line)
        print()
        print(report.causes(overview.causes or []))
        for h, nodes in overview.nodes.items():
            print()
            print(report.level1(nodes, h, None))
        if not overview.causes:
            return 0
        top = overview.causes[0]
        level2 = service.resources(top.node_id, periods, settings, hierarchy=top.hierarchy)
        print()
        print("→ " + report.level2(level2))
        if level2.lines:
            arn = level2.lines[0].resource_arn
            level3 = service.story(arn, periods, settings, limit=16)
            print()
            print("→ " + report.level3(level3.events, arn, periods.compare_start, periods.current_end))
            print(report.explanation(level3.explanation))
        others = [c for c in overview.causes[1:4] if c.top_resource]
        if others:
            print()
            print("→ the next causes, each one's largest resource explained (polo delta --resource ARN for its timeline)")
            for cause in others:
                why = service.explain(cause.top_resource, periods, settings)
                print(f"  {cause.node_id}: {cause.top_resource_name or cause.top_resource}: {why.text}")
    return 0


def _periods(args: argparse.Namespace):
    from polo_pipelines.drilldown.periods import DeltaError, Periods

    one_day = dt.timedelta(days=1)
    if args.since or args.until:
        if not (args.since and args.until):
            raise DeltaError("--since and --until go together (both dates are included)")
        if args.until < args.since:
            raise DeltaError(f"--until {args.until} is before --since {args.since}")
        current_start, current_end = args.since, args.until + one_day
    else:
        week = Periods.last_complete_week(args.today or _today())
        current_start, current_end = week.current_start, week.current_end
    if args.compare_since or args.compare_until:
        if not (args.compare_since and args.compare_until):
            raise DeltaError("--compare-since and --compare-until go together (both dates are included)")
        if args.compare_until < args.compare_since:
            raise DeltaError(f"--compare-until {args.compare_until} is before --compare-since {args.compare_since}")
        return Periods(current_start, current_end, args.compare_since, args.compare_until + one_day)
    return Periods.preceding(current_start, current_end)


def cmd_delta(args: argparse.Namespace) -> int:
    from polo_pipelines.cli import report
    from polo_pipelines.drilldown.periods import Settings
    from polo_pipelines.drilldown.service import DrillDown, answer
    from polo_pipelines.store import polo_store

    periods = _periods(args)
    settings = Settings(args.node_threshold, args.resource_threshold, args.include_credits)
    with polo_store(reader=True) as store:
        service = DrillDown(store)
        complete = service.completeness(periods)
        if args.resource:
            level3 = service.story(args.resource, periods, settings, limit=args.limit)
            body = level3.as_json()
            text = [
                report.level3(level3.events, args.resource, periods.compare_start, periods.current_end)
                + "\n"
                + report.explanation(level3.explanation)
            ]
        elif args.node:
            found = service.resources(args.node, periods, settings, hierarchy=args.hierarchy)
            body, text = found.as_json(), [report.level2(found)]
        elif args.causes:
            total, found = service.headline(periods, settings), service.causes(periods, settings, limit=args.limit)
            body = {"total": total, "causes": found}
            text = [report.headline(total, periods), "", report.causes(found)]
        else:
            overview = service.overview(
                periods, settings, hierarchy=args.hierarchy, parent=args.parent, limit=args.limit, causes=min(args.limit, 8)
            )
            body, text = overview.as_json(), [report.headline(overview.headline, periods)]
            if overview.causes is not None:
                text += ["", report.causes(overview.causes)]
            for h, nodes in overview.nodes.items():
                text += ["", report.level1(nodes, h, args.parent)]
    body = {**body, "completeness": {name: c.as_json() for name, c in complete.items()}}
    at = 1 if len(text) > 1 else 0  # under the headline, else above the level's table
    text[at:at] = report.completeness(complete)
    print(json.dumps(answer(periods, settings, body), indent=2) if args.json else "\n".join(text))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from polo_pipelines.cli import report
    from polo_pipelines.cli.text import text_table, usd
    from polo_pipelines.drilldown.delta import CENT
    from polo_pipelines.drilldown.periods import Periods, Settings, day_span
    from polo_pipelines.drilldown.service import DrillDown
    from polo_pipelines.drilldown.summary import offsets, status, two_week_costs, without_zeros
    from polo_pipelines.hierarchy.ancestry import organization
    from polo_pipelines.settings import clickhouse_dsn, polo_home, sample_dir
    from polo_pipelines.store import polo_store
    from polo_pipelines.store.storage import parse_dsn

    periods = Periods.last_complete_week(args.today or _today())
    with polo_store(reader=True) as store:
        accounts = two_week_costs(store, periods, "account")
        accounts["account_name"] = report.account_names(accounts["account"], organization(store))
        services = two_week_costs(store, periods, "service")
        categories = two_week_costs(store, periods, "charge_category")
        drill = DrillDown(store)
        usage = drill.headline(periods, Settings())
        complete = drill.completeness(periods)
        loaded, _ = status(store)
    total_prev, total_last = float(accounts["previous_week"].sum()), float(accounts["last_week"].sum())
    billed_last = float(accounts["billed_last_week"].sum())
    if args.json:
        doc = {
            "previous_week": [periods.compare_start.isoformat(), periods.compare_end.isoformat()],
            "last_week": [periods.current_start.isoformat(), periods.current_end.isoformat()],
            "totals": {
                "all_charges": {"previous_week": total_prev, "last_week": total_last, "billed_last_week": billed_last},
                "without_credits_and_tax": {"previous_week": usage.compare_cost, "last_week": usage.current_cost},
                "by_charge_category": categories.to_dict(orient="records"),
            },
            "accounts": accounts.to_dict(orient="records"),
            "services": services.to_dict(orient="records"),
            "completeness": {name: c.as_json() for name, c in complete.items()},
        }
        print(json.dumps(doc, default=str, indent=2))
        return 0
    print()
    print(
        f"Cost of the last two complete weeks: {day_span(periods.compare_start, periods.compare_end)} and {day_span(periods.current_start, periods.current_end)}"
    )
    made_of = offsets(categories)
    print(
        f"Total: {usd(total_last)} last week, {usd(total_last - total_prev, True)} vs the week before (every charge: credits, refunds and tax included)"
        + (f"\n       last week is {made_of}" if made_of else "")
    )
    if abs(billed_last - total_last) >= CENT:
        print(f"       {usd(billed_last)} billed last week (before commitments are spread over the days they cover)")
    print(
        f"       {usd(usage.current_cost)} last week, {usd(usage.delta, True)} without credits, refunds and tax: "
        "the total `polo delta` explains"
    )
    for line in report.completeness(complete, current="last week", compare="the week before"):
        print(line)
    named = accounts.assign(account=[f"{n} ({a})" if n else a for a, n in zip(accounts["account"], accounts["account_name"])])
    for title, frame in (("Per account", named.drop(columns="account_name")), ("Per service", services)):
        shown, hidden = without_zeros(frame)
        billed_differs = bool(((shown["billed_last_week"] - shown["last_week"]).abs() >= CENT).any())
        credited = bool((shown["credits_last_week"].abs() >= CENT).any())
        columns = [
            "previous_week",
            "last_week",
            *(["billed_last_week"] if billed_differs else []),
            *(["credits_last_week"] if credited else []),
            "change",
        ]
        print()
        print(title)
        shown = shown.assign(credits_last_week=shown["credits_last_week"].where(shown["credits_last_week"].abs() >= CENT))  # blank: none
        print(text_table(shown[[frame.columns[0], *columns]], tuple(columns), signed=("change",)))
        if hidden:
            print(f"  (and {hidden} more with $0.00 in both weeks)")
    print()
    print("Where the data lives")
    print(f"  ClickHouse store: {parse_dsn(clickhouse_dsn()).redacted} (database polo, table resource_events)")
    print(f"  Sample world:     {sample_dir()}")
    print(f"  Dagster home:     {os.environ.get('DAGSTER_HOME') or polo_home() / 'dagster'}  (open the UI with `make dev`)")
    print()
    print("Loaded per collector")
    print(text_table(loaded, ("cost_usd",)))
    return 0


def cmd_hierarchy(args: argparse.Namespace) -> int:
    from polo_pipelines.hierarchy.ancestry import DEFAULT_FILE
    from polo_pipelines.hierarchy.suggest import suggest
    from polo_pipelines.store import polo_store
    from polo_pipelines.validation import load_yaml

    if args.days < 1 or not 0 <= args.min_coverage <= 1:
        raise ValueError("--days must be at least 1 and --min-coverage a fraction between 0 and 1")
    with polo_store(reader=True) as store:
        found = suggest(store, days=args.days, min_coverage=args.min_coverage)
    defaults = load_yaml(DEFAULT_FILE, "hierarchy file", ValueError)["hierarchies"]
    if args.json:
        print(
            json.dumps(
                {
                    "window": [str(d) for d in found.window] if found.window else None,
                    "cost": found.total,
                    "keys": found.keys.to_dict(orient="records"),
                    "hierarchies": found.hierarchies,
                }
            )
        )
    else:
        print(found.as_yaml(defaults), end="")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from polo_pipelines.cli.text import text_table
    from polo_pipelines.drilldown.summary import status
    from polo_pipelines.settings import clickhouse_dsn
    from polo_pipelines.store import polo_store
    from polo_pipelines.store.schema import schema_version
    from polo_pipelines.store.storage import parse_dsn

    with polo_store(reader=True) as store:
        version = schema_version(store)
        loaded, activity = status(store)
    if args.json:
        doc = {
            "store": parse_dsn(clickhouse_dsn()).redacted,
            "schema_version": version,
            "collectors": loaded.to_dict(orient="records"),
            "activity": activity.to_dict(orient="records"),
        }
        print(json.dumps(doc, default=str))
        return 0
    print(f"store {parse_dsn(clickhouse_dsn()).redacted}, schema version {version}")
    print()
    print("Cost collectors")
    print(text_table(loaded, ("cost_usd",)))
    if not activity.empty:
        print()
        print("Activity (config, lifecycle and metric events: no cost)")
        print(text_table(activity))
    return 0


def cmd_check_connections(args: argparse.Namespace) -> int:
    import pandas as pd

    from polo_pipelines.cli.text import text_table
    from polo_pipelines.sources.connections import check_connections

    platforms = [p.strip() for p in (args.platforms or "").split(",") if p.strip()] or None
    results = check_connections(platforms)
    if args.json:
        print(json.dumps([r.__dict__ for r in results]))
    else:
        print(text_table(pd.DataFrame([r.__dict__ for r in results]), ()))
    return 1 if any(r.status == "failed" for r in results) else 0


def _value(text: str):
    """A command-line value: JSON where it parses (numbers, lists, true), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: list[str] | None, what: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} must look like key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _value(value.strip())
    return out


def cmd_rules(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd
    import yaml

    from polo_pipelines.cli.text import text_table
    from polo_pipelines.rules import book, evaluate
    from polo_pipelines.rules import ruleset as rules
    from polo_pipelines.store import polo_store

    path = Path(args.file) if args.file else rules.rules_file()
    current = rules.load(path)
    if args.action == "list":
        frame = pd.DataFrame(
            [
                {
                    "id": r.rule_id,
                    "type": r.rule_type,
                    "severity": r.severity,
                    "enabled": r.enabled,
                    "scope": r.scope_label,
                    "cadence": r.cadence,
                    "name": r.name,
                }
                for r in current
            ]
        )
        print(json.dumps(frame.to_dict(orient="records")) if args.json else text_table(frame, ()))
        return 0
    if args.action == "show":
        rule = book.find(current, args.rule_id, path)
        doc = rule.to_doc()
        with polo_store() as store:
            compiled = rules.compile_rule(rule, dt.datetime.now(dt.UTC))
            open_now = evaluate.violations(store, state="open")
        doc["watched_asset"] = rule.watched_asset
        doc["open_violations"] = int((open_now["rule_id"] == rule.rule_id).sum())
        if args.json:
            print(json.dumps({**doc, "sql": compiled.sql.strip(), "parameters": {k: str(v) for k, v in compiled.params.items()}}))
        else:
            print(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).rstrip())
            print("compiled SQL (every value a parameter):")
            print("  " + "\n  ".join(line.strip() for line in compiled.sql.strip().splitlines() if line.strip()))
            print("parameters: " + ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in compiled.params.items()))
        return 0
    if args.action == "add":
        if args.from_file:
            doc = yaml.safe_load(Path(args.from_file).read_text())
            docs = doc if isinstance(doc, list) else [doc]
        else:
            scope = {k: v for k, v in {"hierarchy": args.hierarchy, "node": args.node, "node_type": args.node_type}.items() if v}
            filters = _pairs(args.filter, "--filter")
            if filters:
                scope["filters"] = filters
            docs = [
                {
                    "id": args.rule_id,
                    "name": args.name or args.rule_id,
                    "type": args.type,
                    "scope": scope,
                    "condition": _pairs(args.condition, "--condition"),
                    "severity": args.severity,
                    "channel": args.channel or "",
                }
            ]
        current = book.added(current, docs, path)
    elif args.action in ("disable", "enable"):
        current = book.switched(current, args.rule_id, args.action == "enable", path)
    if args.action in ("add", "disable", "enable"):
        rules.save(current, path)
    with polo_store() as store:
        counts = rules.sync(store, current)
    print(f"{path}: {len(current)} rules; store: {counts['added']} added, {counts['changed']} changed, {counts['disabled']} disabled")
    return 0


def _listed(value: str | None, allowed, option: str) -> list[str] | None:
    """A comma-separated option's values, each one of ``allowed`` (else a message naming the option and the choices)."""
    values = [x.strip() for x in value.split(",") if x.strip()] if value else []
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{option}: {unknown[0]!r} is not one of {', '.join(allowed)}")
    return values or None


def cmd_violations(args: argparse.Namespace) -> int:
    import pandas as pd

    from polo_pipelines.cli.text import text_table
    from polo_pipelines.drilldown.delta import hierarchies_of
    from polo_pipelines.rules import evaluate
    from polo_pipelines.rules.ruleset import SEVERITIES
    from polo_pipelines.rules.types import TYPES
    from polo_pipelines.store import polo_store

    severity, rule_type = _listed(args.severity, SEVERITIES, "--severity"), _listed(args.type, sorted(TYPES), "--type")
    with polo_store(reader=True) as store:
        if args.scope:
            hierarchies_of(store, args.scope)  # an unknown node is an error, not an empty list
        frame = evaluate.violations(store, severity=severity, rule_type=rule_type, scope=args.scope, state=args.state, limit=args.limit)
    if args.json:
        print(json.dumps(frame.to_dict(orient="records"), default=str))
        return 0
    what = {"open": "open violation(s)", "resolved": "resolved violation(s)", "all": "violation(s), open and resolved"}[args.state]
    print(f"{len(frame)} {what}")
    if frame.empty:
        return 0
    shown = pd.DataFrame(
        {
            "severity": frame["severity"],
            "rule_id": frame["rule_id"],
            "entity": [a or n for a, n in zip(frame["resource_arn"], frame["node_id"])],
            "actual": [_number(v) for v in frame["actual_value"]],
            "threshold": [_number(v) for v in frame["threshold_value"]],
            "detected_at": [_moment(t) for t in frame["detected_at"]],
            **({"resolved_at": [_moment(t) or "open" for t in frame["resolved_at"]]} if args.state != "open" else {}),
            "notified": ["yes" if n else "no" for n in frame["notified"]],
        }
    )
    print(text_table(shown, ()))
    return 0


def _number(value) -> str:
    """A rule's figure as text: blank where it has none, else two decimals."""
    import pandas as pd

    return "" if value is None or pd.isna(value) else f"{float(value):,.2f}"


def _moment(value) -> str:
    """A timestamp to the minute, UTC; blank where there is none."""
    import pandas as pd

    if value is None or pd.isna(value):
        return ""
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def cmd_compliance(args: argparse.Namespace) -> int:
    from polo_pipelines.drilldown.delta import held_hierarchies, hierarchies_of
    from polo_pipelines.rules import evaluate
    from polo_pipelines.store import polo_store

    with polo_store(reader=True) as store:
        if args.hierarchy and args.hierarchy not in (held := held_hierarchies(store)):
            raise ValueError(f"--hierarchy: unknown hierarchy {args.hierarchy!r} (the store holds {', '.join(held) or 'none'})")
        if args.node:
            hierarchies_of(store, args.node)
        frame = evaluate.compliance(store, args.hierarchy)
    if args.node:
        frame = frame[frame["node_id"] == args.node]
    if args.json:
        print(json.dumps(frame.to_dict(orient="records"), default=str))
        return 0
    for row in frame.head(args.limit).itertuples(index=False):
        print(
            f"{row.node_id}: {row.compliance_pct:g}% compliant, {row.open_violations} open violation(s) ({row.non_compliant} of {row.resources} resources)"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from polo_pipelines.settings import polo_home
    from polo_pipelines.web.app import create_app
    from polo_pipelines.web.security import local_token, token_setting

    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    token, token_file = token_setting() or None, None
    if token is None and loopback:
        token_file = local_token(polo_home())
        token = token_file.read_text().strip()
        where = f"rule changes: sign in with the token in {token_file} (or set POLO_API_TOKEN)"
    elif token is None:
        where = f"serving on {args.host}: reads are open to the network; rule changes are off without POLO_API_TOKEN"
    else:
        where = "rule changes: sign in with POLO_API_TOKEN"
    print(f"Polo's pages and API: http://{args.host}:{args.port}/ (API description at /docs); {where}")
    uvicorn.run(create_app(token=token or "", token_file=token_file), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_otlp(args: argparse.Namespace) -> int:
    import uvicorn

    from polo_pipelines.sources.otel.receiver import create_app, token_setting

    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    if not loopback and not token_setting():
        raise ValueError(f"--host {args.host} exposes the receiver beyond this machine: set POLO_OTLP_TOKEN first")
    print(f"OTLP/HTTP traces: http://{args.host}:{args.port}/v1/traces (protobuf or JSON, gzip or not)")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parser() -> argparse.ArgumentParser:
    from polo_pipelines.drilldown.periods import Settings
    from polo_pipelines.rules.types import TYPES as RULE_TYPES
    from polo_pipelines.sources import names as source_names

    p = argparse.ArgumentParser(prog="polo", description="Polo: where did the money go?")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the ClickHouse schema").set_defaults(fn=cmd_migrate)
    s = sub.add_parser("sample", help="write the sample world's export files")
    s.add_argument("--end", type=_date, help="first day after the world (default: today, UTC)")
    s.set_defaults(fn=cmd_sample)
    r = sub.add_parser("run", help="collect the sample world through the Dagster job and print the summary")
    r.add_argument("--json", action="store_true")
    r.add_argument("--today", type=_date, help=argparse.SUPPRESS)
    r.set_defaults(fn=cmd_run)
    m = sub.add_parser("summary", help="cost per account and per service for the last two complete weeks")
    m.add_argument("--today", type=_date, help="report as if today were this day")
    m.add_argument("--json", action="store_true")
    m.set_defaults(fn=cmd_summary)
    d = sub.add_parser("delta", help="why costs moved: nodes (default), --node for its resources, --resource for its events")
    d.add_argument("--hierarchy", help="one hierarchy (default: all for Level 1; found from the node for Level 2)")
    d.add_argument("--parent", help="Level 1: only the children of this node")
    d.add_argument("--node", help="Level 2: the resources under this node")
    d.add_argument("--resource", help="Level 3: this resource's events, newest first")
    d.add_argument("--causes", action="store_true", help="only the causes: the most concrete moving nodes across hierarchies")
    d.add_argument("--since", type=_date, help="first day of the current period (default: last complete ISO week)")
    d.add_argument("--until", type=_date, help="last day of the current period (included)")
    d.add_argument("--compare-since", type=_date, help="first day of the compare period (default: the period just before)")
    d.add_argument("--compare-until", type=_date, help="last day of the compare period (included)")
    defaults = Settings()
    d.add_argument(
        "--node-threshold",
        type=float,
        default=defaults.node_threshold,
        help=f"show nodes whose |delta| exceeds this (USD, default {defaults.node_threshold:g})",
    )
    d.add_argument(
        "--resource-threshold",
        type=float,
        default=defaults.resource_threshold,
        help=f"list resources whose |delta| exceeds this (USD, default {defaults.resource_threshold:.2f})",
    )
    d.add_argument("--include-credits", action="store_true", help="count credits, refunds and tax too")
    d.add_argument("--limit", type=int, default=20, help="rows at most (default 20)")
    d.add_argument("--today", type=_date, help="report as if today were this day")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=cmd_delta)
    c = sub.add_parser("check-connections", help="per configured platform, whether its credentials work (never prints them)")
    c.add_argument("--platforms", help=f"comma-separated: {', '.join(source_names())} (default: all)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_check_connections)
    ru = sub.add_parser("rules", help="budget rules: list, show, add, disable, enable, sync (the rule file and polo.budget_rules)")
    ru.add_argument("action", choices=["list", "show", "add", "disable", "enable", "sync"])
    ru.add_argument("rule_id", nargs="?", help="the rule (show, disable, enable) or the new rule's id (add)")
    ru.add_argument("--file", help="the rule file (default POLO_RULES_FILE or config/rules.yaml)")
    ru.add_argument("--from-file", help="add: a YAML file holding one rule or a list of rules")
    ru.add_argument("--name")
    ru.add_argument("--type", choices=list(RULE_TYPES))
    ru.add_argument("--hierarchy")
    ru.add_argument("--node")
    ru.add_argument("--node-type")
    ru.add_argument("--filter", action="append", help="key=value, e.g. resource_type='[\"ec2:instance\"]' or environment=staging")
    ru.add_argument("--condition", action="append", help="key=value, e.g. max_usd=500 or period=month")
    ru.add_argument("--severity", default="warning", choices=["info", "warning", "critical"])
    ru.add_argument("--channel", help="slack, email or email:<address>")
    ru.add_argument("--json", action="store_true")
    ru.set_defaults(fn=cmd_rules)
    vi = sub.add_parser("violations", help="rule violations: filter by severity, rule type, scope node, open/resolved")
    vi.add_argument("--severity", help="comma-separated: info, warning, critical")
    vi.add_argument("--type", help="comma-separated rule types")
    vi.add_argument("--scope", help="a node: its own violations and its resources'")
    vi.add_argument("--state", default="open", choices=["open", "resolved", "all"])
    vi.add_argument("--limit", type=int, default=100)
    vi.add_argument("--json", action="store_true")
    vi.set_defaults(fn=cmd_violations)
    co = sub.add_parser("compliance", help="compliance score per hierarchy node (least compliant first)")
    co.add_argument("--hierarchy")
    co.add_argument("--node")
    co.add_argument("--limit", type=int, default=20)
    co.add_argument("--json", action="store_true")
    co.set_defaults(fn=cmd_compliance)
    h = sub.add_parser("hierarchy", help="suggest: a hierarchy file proposed from the tag keys that cover the most cost")
    h.add_argument("action", choices=["suggest"])
    h.add_argument("--days", type=int, default=30, help="the last N days of cost the store holds (default 30)")
    h.add_argument("--min-coverage", type=float, default=0.2, help="the share of cost a key must cover (default 0.2)")
    h.add_argument("--json", action="store_true")
    h.set_defaults(fn=cmd_hierarchy)
    sv = sub.add_parser("serve", help="the web pages and the HTTP API (binds 127.0.0.1 unless told otherwise)")
    sv.add_argument("--host", default=os.environ.get("POLO_API_HOST", "127.0.0.1"))
    sv.add_argument("--port", type=int, default=int(os.environ.get("POLO_API_PORT", "8765")))
    sv.set_defaults(fn=cmd_serve)
    ot = sub.add_parser("otlp", help="receive OpenTelemetry traces over OTLP/HTTP into polo.otel_traces (binds 127.0.0.1)")
    ot.add_argument("--host", default=os.environ.get("POLO_OTLP_HOST", "127.0.0.1"))
    ot.add_argument("--port", type=int, default=int(os.environ.get("POLO_OTLP_PORT", "4318")))
    ot.set_defaults(fn=cmd_otlp)
    t = sub.add_parser("status", help="what the store holds, per collector")
    t.add_argument("--json", action="store_true")
    t.set_defaults(fn=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (PoloInputError, StoreError, ValueError) as exc:  # RuleError and DeltaError are ValueErrors
        print(f"polo: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `polo summary | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
