"""Runs whose worker died: failed, and their pool slots freed, so the next run of their collector can start.

Dagster's run monitoring (on in ``config/dagster.yaml``) fails a run that never started or ran past its
maximum, and frees the slots of runs that ended. The default run launcher cannot tell it that a
run worker died (killed, out of memory), so such a run stays STARTED for hours, holding its pool
slot: every later run of that collector, and of the ``rules`` pool, waits behind it. A run
worker reports its pid when it starts ("Started process for run (pid: N)"); this sensor checks,
each minute, that the pid of every started run on this host is still alive, and reports the run
failed when it is not. The step processes the dead worker had started are stopped too.
"""

from __future__ import annotations

import os
import signal

import dagster as dg


def _pids(instance: dg.DagsterInstance, run_id: str) -> tuple[int | None, list[int]]:
    """The run worker's pid, and the pids of the step processes it started, from the run's engine events."""
    worker, steps = None, []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        data = event.engine_event_data if event else None
        pid = (data.metadata or {}).get("pid") if data else None
        if pid is None:
            continue
        value = int(str(getattr(pid, "value", pid)))
        if event.step_key:
            steps.append(value)
        elif worker is None or (record.message or "").startswith("Started process for run"):
            worker = value
    return worker, steps


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_dagster(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"dagster" in f.read()
    except OSError:
        return False


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report every started run whose worker process is gone as failed and free its slots; return their ids."""
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        worker, steps = _pids(instance, run.run_id)
        if worker is None or _alive(worker):
            continue
        for pid in steps:
            if _alive(pid) and _is_dagster(pid):  # a pid may have been reused since: only a Dagster process is ours
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        instance.report_run_failed(run, f"the run worker (pid {worker}) is gone: the run is failed and its pool slots freed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def dead_run_workers(context: dg.SensorEvaluationContext):
    """Fails the runs whose worker died on this host and frees their pool slots."""
    if type(context.instance.run_launcher).__name__ != "DefaultRunLauncher":
        return dg.SkipReason("runs are launched elsewhere: their launcher's own health checks apply")
    failed = fail_dead_runs(context.instance)
    return dg.SkipReason(
        f"failed {len(failed)} run(s) whose worker died: {', '.join(failed)}" if failed else "every started run's worker is alive"
    )
