"""The ``polo`` command: set up the store, run the sample world end to end, and read the results."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from polo_pipelines.errors import PoloInputError
from polo_pipelines.storage import StoreError


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def cmd_migrate(args: argparse.Namespace) -> int:
    from polo_pipelines.schema import migrate, schema_version
    from polo_pipelines.settings import clickhouse_dsn
    from polo_pipelines.storage import open_store, parse_dsn

    with open_store(clickhouse_dsn()) as store:
        applied = migrate(store)
        version = schema_version(store)
    where = parse_dsn(clickhouse_dsn()).redacted
    print(f"schema at version {version} in {where}" + (f" (applied {applied})" if applied else " (up to date)"))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from polo_pipelines.sample import sample_window, write_sample

    root = write_sample(end=args.end or _today())
    start, end = sample_window(root)
    print(f"sample world {start}..{end - dt.timedelta(days=1)} written to {root}")
    return 0


def run_collection(start: dt.date, end: dt.date):
    """Run the daily collection job over [start, end) as one single-run backfill, recorded in the Dagster instance."""
    import dagster as dg

    from polo_pipelines.definitions import defs

    job = defs().resolve_job_def("daily_cost_collection")
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": (end - dt.timedelta(days=1)).isoformat(),
    }
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the run's log stays in the instance
    return job.execute_in_process(run_config=quiet, instance=instance, tags=tags, raise_on_error=False)


def cmd_run(args: argparse.Namespace) -> int:
    from polo_pipelines.sample import sample_window, write_sample

    write_sample(end=_today())
    start, end = sample_window()
    print(f"Polo: collecting the sample world's costs {start}..{end - dt.timedelta(days=1)} (one backfill run)")
    result = run_collection(start, end)
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"step failed: {event.step_key}: {event.event_specific_data.error.message.strip()}", file=sys.stderr)
        return 1
    return cmd_summary(args)


def cmd_summary(args: argparse.Namespace) -> int:
    from polo_pipelines.settings import clickhouse_dsn, polo_home, sample_dir
    from polo_pipelines.storage import parse_dsn
    from polo_pipelines.store import polo_store
    from polo_pipelines.summary import last_complete_weeks, status, text_table, two_week_costs

    today = args.today or _today()
    (a0, a1), (b0, b1) = last_complete_weeks(today)
    with polo_store() as store:
        accounts = two_week_costs(store, today, "account")
        services = two_week_costs(store, today, "service")
        loaded = status(store)
    if args.json:
        print(
            json.dumps(
                {
                    "previous_week": [a0.isoformat(), a1.isoformat()],
                    "last_week": [b0.isoformat(), b1.isoformat()],
                    "accounts": accounts.to_dict(orient="records"),
                    "services": services.to_dict(orient="records"),
                },
                default=str,
                indent=2,
            )
        )
        return 0
    money = ("previous_week", "last_week", "change")
    total_prev, total_last = accounts["previous_week"].sum(), accounts["last_week"].sum()
    print()
    print(f"Cost of the last two complete weeks: {a0}..{a1 - dt.timedelta(days=1)} and {b0}..{b1 - dt.timedelta(days=1)}")
    print(f"Total: ${total_last:,.2f} last week, {'+' if total_last >= total_prev else '-'}${abs(total_last - total_prev):,.2f} vs the week before")
    print()
    print("Per account")
    print(text_table(accounts, money, signed=("change",)))
    print()
    print("Per service")
    print(text_table(services, money, signed=("change",)))
    print()
    print("Where the data lives")
    print(f"  ClickHouse store: {parse_dsn(clickhouse_dsn()).redacted} (database polo, table resource_events)")
    print(f"  Sample world:     {sample_dir()}")
    print(f"  Dagster home:     {os.environ.get('DAGSTER_HOME') or polo_home() / 'dagster'}  (open the UI with `make dev`)")
    print()
    print("Loaded per collector")
    print(text_table(loaded, ("cost_usd",)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from polo_pipelines.schema import schema_version
    from polo_pipelines.settings import clickhouse_dsn
    from polo_pipelines.storage import parse_dsn
    from polo_pipelines.store import polo_store
    from polo_pipelines.summary import status, text_table

    with polo_store() as store:
        version = schema_version(store)
        loaded = status(store)
    if args.json:
        print(json.dumps({"store": parse_dsn(clickhouse_dsn()).redacted, "schema_version": version, "collectors": loaded.to_dict(orient="records")}, default=str))
        return 0
    print(f"store {parse_dsn(clickhouse_dsn()).redacted}, schema version {version}")
    print(text_table(loaded, ("cost_usd",)))
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parser() -> argparse.ArgumentParser:
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
    t = sub.add_parser("status", help="what the store holds, per collector")
    t.add_argument("--json", action="store_true")
    t.set_defaults(fn=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (PoloInputError, StoreError, ValueError) as exc:
        print(f"polo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
