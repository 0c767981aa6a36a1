"""A job of three collectors (AWS, FOCUS, GitHub) under the multiprocess executor, rebuilt in each step's own process."""

import contextlib
import os
import time
from pathlib import Path

import dagster as dg

from polo_pipelines.defs.aws.assets import aws_cost_events
from polo_pipelines.defs.aws.resources import aws_source_from_env
from polo_pipelines.defs.focus.assets import focus_cost_events
from polo_pipelines.defs.focus.resources import FocusSource
from polo_pipelines.defs.github.assets import github_cost_events
from polo_pipelines.defs.github.resources import GithubSource
from polo_pipelines.defs.store.resources import ClickHouseResource
from dagster_aws.s3 import S3Resource


class BarrierClickHouse(ClickHouseResource):
    """The real store, opened only once every step has come to write: the writes really do meet."""

    barrier_dir: str
    parties: int = 3

    @contextlib.contextmanager
    def session(self):
        barrier = Path(self.barrier_dir)
        (barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError("the other step never came to write")
            time.sleep(0.02)
        with super().session() as store:
            yield store


def parallel_collection_job() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[aws_cost_events, focus_cost_events, github_cost_events],
        resources={
            "clickhouse": BarrierClickHouse(barrier_dir=os.environ["POLO_TEST_BARRIER"]),
            "aws_costs": aws_source_from_env(),
            "focus_source": FocusSource(uri=os.environ["POLO_FOCUS_URI"]),
            "s3": S3Resource(region_name="us-east-1"),
            "github": GithubSource(),
        },
        jobs=[
            dg.define_asset_job(
                "parallel_collection",
                selection=["aws_cost_events", "focus_cost_events", "github_cost_events"],
                executor_def=dg.multiprocess_executor.configured({"max_concurrent": 3}),
            )
        ],
    )
    return defs.resolve_job_def("parallel_collection")
