"""A run whose worker was killed is failed and its pool slot freed, so the next run of its pool can claim it."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test, instance_for_test

from polo_pipelines.defs.runs.sensors import fail_dead_runs


def test_a_killed_run_worker_frees_its_pool_slot_for_the_next_run(tmp_path):
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("cost_aws", 1)
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        try:
            killed_run = create_run_for_test(instance, job_name="collect", status=dg.DagsterRunStatus.STARTED)
            instance.report_engine_event(
                f"Started process for run (pid: {worker.pid}).", killed_run, EngineEventData.in_process(worker.pid)
            )
            live_run = create_run_for_test(instance, job_name="collect", status=dg.DagsterRunStatus.STARTED)
            instance.report_engine_event(f"Started process for run (pid: {alive.pid}).", live_run, EngineEventData.in_process(alive.pid))
            assert storage.claim_concurrency_slot("cost_aws", killed_run.run_id, "aws_cost_events").is_claimed

            worker.kill()  # kill -9 of the run worker: nothing of it runs its cleanup
            worker.wait()
            next_run = create_run_for_test(instance, job_name="collect", status=dg.DagsterRunStatus.STARTED)
            assert not storage.claim_concurrency_slot("cost_aws", next_run.run_id, "aws_cost_events").is_claimed  # waits behind it

            assert fail_dead_runs(instance) == [killed_run.run_id]
            assert instance.get_run_by_id(killed_run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert instance.get_run_by_id(live_run.run_id).status == dg.DagsterRunStatus.STARTED  # its worker lives
            assert storage.claim_concurrency_slot("cost_aws", next_run.run_id, "aws_cost_events").is_claimed
            assert fail_dead_runs(instance) == []
        finally:
            for process in (worker, alive):
                process.kill()
                process.wait()
