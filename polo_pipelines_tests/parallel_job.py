"""A job of three collectors (AWS, FOCUS, GitHub) under the multiprocess executor, rebuilt in each step's own process."""

import contextlib
import os
import time
from pathlib import Path

import dagster as dg

from polo_pipelines.defs.collection.assets import COLLECTORS
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.sources.aws.source import from_env as aws_from_env
from polo_pipelines.sources.focus.source import FocusSource
from polo_pipelines.sources.github.source import GithubSource

aws_cost_events = COLLECTORS["aws"]
focus_cost_events = COLLECTORS["focus"]
github_cost_events = COLLECTORS["github"]


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
            "aws": aws_from_env(),
            "focus": FocusSource(uri=os.environ["POLO_FOCUS_URI"]),
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
