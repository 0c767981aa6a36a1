"""The evaluation clock: cost rules at minute 5 of every hour, state rules every 15 minutes."""

import dagster as dg

from polo_pipelines.defs.rules.jobs import rules_15min, rules_hourly

rules_hourly_schedule = dg.ScheduleDefinition(
    job=rules_hourly, cron_schedule="5 * * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING
)
rules_15min_schedule = dg.ScheduleDefinition(
    job=rules_15min, cron_schedule="*/15 * * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING
)
