"""The evaluation clock: cost rules at minute 5 of every hour, state rules every 15 minutes.

While Polo collects the sample world alone, every evaluation is as of the sample world's own "now" (22:00 in
Melbourne on its last day, as `make run` evaluates it): on the wall clock, the first tick after `make dev` would
resolve the staging stack's violations the terminal had just printed, and the UI would tell another story."""

import datetime as dt

import dagster as dg

from polo_pipelines.defs.rules.jobs import rules_15min, rules_hourly


def sample_now() -> dt.datetime | None:
    """The sample world's evaluation moment, while Polo collects the sample world alone; else None (the wall clock)."""
    from polo_pipelines.sources.aws.sample_inventory import reference_time
    from polo_pipelines.sources.sample import only_sample_world, sample_window

    window = sample_window()
    if window is None or not only_sample_world():
        return None
    return reference_time(window[1])


def evaluation_request(context: dg.ScheduleEvaluationContext, cadence: str) -> dg.RunRequest:
    """A run as of the tick (an ordinary deployment) or as of the sample world's moment."""
    at = sample_now()
    ops = {"rule_violations": {"config": {"cadence": cadence, "as_of": at.isoformat() if at else ""}}}
    if cadence == "15min":
        ops["aws_inventory_events"] = {"config": {"as_of": at.isoformat() if at else ""}}
        ops["otel_recent_costs"] = {"config": {"as_of": at.isoformat() if at else ""}}
    tags = {"polo/clock": "sample world" if at else "wall clock"}
    return dg.RunRequest(run_key=None, run_config={"ops": ops}, tags=tags)


@dg.schedule(job=rules_hourly, cron_schedule="5 * * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)
def rules_hourly_schedule(context: dg.ScheduleEvaluationContext):
    """The budget and ratio rules, every hour at minute 5."""
    return evaluation_request(context, "hourly")


@dg.schedule(job=rules_15min, cron_schedule="*/15 * * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)
def rules_15min_schedule(context: dg.ScheduleEvaluationContext):
    """The existence, config and lifecycle rules after a fresh inventory snapshot, every 15 minutes."""
    return evaluation_request(context, "15min")
