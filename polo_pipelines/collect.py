"""How a collector asset runs: read the source outside the store lock, replace the window's days, report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import dagster as dg
import pandas as pd

from polo_pipelines.api import SourceUnavailable
from polo_pipelines.errors import PoloInputError
from polo_pipelines.events import DayLoad, add_properties, as_utc, day_range, replace_days, window_label
from polo_pipelines.settings import env_flag
from polo_pipelines.storage import Store

T = TypeVar("T")

COLLECTOR_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass
class Collected:
    collector: str
    source: str
    events: pd.DataFrame
    sources: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def read_or_fail(read: Callable[[], T]) -> T:
    """Bad input fails the step without retries (it would fail the same way again), naming source, field and partition;
    an API that kept failing through the client's own retries fails it with Dagster's retry policy still allowed."""
    try:
        return read()
    except PoloInputError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"source": exc.source, "field": exc.field or "", "partition": exc.partition or ""},
            allow_retries=False,
        ) from exc
    except SourceUnavailable as exc:
        raise dg.Failure(description=str(exc), metadata={"source": exc.source, "partition": exc.partition or ""}) from exc


class AsOfConfig(dg.Config):
    """Run config of assets that observe "now" (inventory snapshots, rule evaluations): ``as_of`` replays a moment."""

    as_of: str = ""  # ISO time; empty means now

    def moment(self) -> dt.datetime:
        if not self.as_of:
            return dt.datetime.now(dt.timezone.utc)
        return as_utc(dt.datetime.fromisoformat(self.as_of))


def sample_mode(configured: bool, embedded: bool) -> str:
    """'live' for a configured platform; otherwise 'sample' (the sample world, on the embedded store unless
    POLO_SAMPLE_TO_SERVER=1, and never with POLO_SAMPLE=0) or 'skip'."""
    if configured:
        return "live"
    if env_flag("POLO_SAMPLE", default=True) and (embedded or env_flag("POLO_SAMPLE_TO_SERVER")):
        return "sample"
    return "skip"


class PlatformSource(dg.ConfigurableResource):
    """A platform whose costs come from an HTTP API: configured by settings, or served from the sample world."""

    @property
    def platform(self) -> str:
        raise NotImplementedError

    @property
    def configured(self) -> bool:
        raise NotImplementedError

    def collect(self, start: dt.date, end: dt.date, *, sample: bool = False) -> Collected:
        raise NotImplementedError

    def check(self) -> str:
        """One cheap authenticated call; returns what it saw (never a credential), raises when refused."""
        raise NotImplementedError


def sample_platforms():
    """The sample world's platforms, served by the process's local sample server (the world is written if absent)."""
    from polo_pipelines import sample
    from polo_pipelines.sample.platforms import PlatformSample

    window = sample.sample_window()
    if window is None:
        sample.write_sample()
        window = sample.sample_window()
    world = PlatformSample(*window)
    return world, world.serve()


def platform_asset(platform: str, description: str) -> dg.AssetsDefinition:
    """The collector asset of an API platform (``<platform>_cost_events``), reading through the resource ``<platform>``."""
    from polo_pipelines.partitions import daily_partitions, window_days

    @dg.asset(
        name=f"{platform}_cost_events",
        description=description,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=platform,
        kinds={"clickhouse", platform},
        retry_policy=COLLECTOR_RETRY,
        output_required=False,
        pool=f"cost_{platform}",
        required_resource_keys={"clickhouse", platform},
    )
    def collector(context):  # no annotation: this module postpones annotations, which Dagster cannot read
        yield from materialize_platform(context, context.resources.clickhouse, getattr(context.resources, platform), *window_days(context))

    return collector


def materialize_platform(context: dg.AssetExecutionContext, clickhouse, source: PlatformSource, start: dt.date, end: dt.date):
    """The whole body of a platform collector asset: read the window (outside the store lock), replace its days, report."""
    mode = sample_mode(source.configured, clickhouse.is_embedded)
    if mode == "skip":
        context.log.info(f"{source.platform} is not configured: nothing collected, nothing materialized")
        return
    collected = read_or_fail(lambda: source.collect(start, end, sample=mode == "sample"))
    if mode == "sample":
        from polo_pipelines.sample import SAMPLE_PROPERTIES

        collected.events = add_properties(collected.events, SAMPLE_PROPERTIES)
    with clickhouse.session() as store:
        loads = write(store, collected, start, end, context.run.run_id)
    context.log.info(f"{collected.collector} {window_label(start, end)}: {len(collected.events)} events from {collected.source}")
    yield result(collected, loads, start, end)


def write(store: Store, collected: Collected, start: dt.date, end: dt.date, run_id: str) -> list[DayLoad]:
    try:
        return replace_days(
            store,
            collected.events,
            collector=collected.collector,
            days=day_range(start, end),
            source=collected.source,
            sources=collected.sources,
            run_id=run_id,
        )
    except PoloInputError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def markdown_table(frame: pd.DataFrame, money: tuple[str, ...] = ()) -> str:
    if frame.empty:
        return "_no rows_"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [f"${v:,.2f}" if c in money else str(v) for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def result(collected: Collected, loads: list[DayLoad], start: dt.date, end: dt.date) -> dg.MaterializeResult:
    events = collected.events
    top = (
        events.groupby(["aws_account_id", "service"] if collected.collector == "cost_aws" else ["provider", "service"])["value"]
        .sum()
        .sort_values(ascending=False)
        .head(10)
        .reset_index()
        .rename(columns={"value": "cost"})
    )
    by_day = pd.DataFrame(
        {"day": [str(l.day) for l in loads], "events": [l.row_count for l in loads], "cost": [l.value_total for l in loads]}
    )
    metadata = {
        "dagster/row_count": int(sum(l.row_count for l in loads)),
        "window": window_label(start, end),
        "cost_usd": dg.MetadataValue.float(round(float(events["value"].sum()), 6)),
        "billed_usd": dg.MetadataValue.float(round(float(events["billed_cost"].sum()), 6)),
        "sources": dg.MetadataValue.text("\n".join(collected.sources) or "-"),
        "top_costs": dg.MetadataValue.md(markdown_table(top, money=("cost",))),
        "days": dg.MetadataValue.md(markdown_table(by_day, money=("cost",))),
        **{k: int(v) for k, v in collected.counts.items()},
    }
    return dg.MaterializeResult(metadata=metadata)
