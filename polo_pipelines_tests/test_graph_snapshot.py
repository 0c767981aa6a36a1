"""A snapshot of the whole Dagster graph: every asset spec, check, job, schedule and sensor.

A change to the graph shows in review as a change to __snapshots__/test_graph_snapshot.ambr;
accept an intended one with ``pytest polo_pipelines_tests/test_graph_snapshot.py --snapshot-update``.
"""

from __future__ import annotations

import dagster as dg


def _partitions(defn) -> str:
    if defn is None:
        return ""
    if isinstance(defn, dg.TimeWindowPartitionsDefinition):
        return f"{type(defn).__name__}(cron={defn.cron_schedule!r}, tz={defn.timezone})"
    return type(defn).__name__


def graph() -> dict:
    from polo_pipelines.definitions import defs

    d = defs()
    assets = {}
    for spec in sorted(d.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        automation = spec.automation_condition
        assets[spec.key.to_user_string()] = {
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
            "partitions": _partitions(spec.partitions_def),
            "automation": automation.get_label() or type(automation).__name__ if automation else "",
            "freshness": repr(spec.freshness_policy) if spec.freshness_policy else "",
            "metadata": {k: str(v.value if isinstance(v, dg.MetadataValue) else v) for k, v in sorted(spec.metadata.items())},
            "description": (spec.description or "").split("\n")[0],
        }
    checks = sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in d.resolve_asset_graph().asset_check_keys)
    repo = d.get_repository_def()
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
        for job in sorted(repo.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }
    schedules = {s.name: {"cron": s.cron_schedule, "job": s.job_name, "status": str(s.default_status)} for s in repo.schedule_defs}
    sensors = {s.name: {"type": type(s).__name__, "status": str(s.default_status)} for s in repo.sensor_defs}
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": dict(sorted(schedules.items())),
        "sensors": dict(sorted(sensors.items())),
        "resources": sorted(d.resources),
    }


def test_the_graph_is_the_reviewed_one(snapshot):
    assert graph() == snapshot
