"""The one collector asset factory: every registered source becomes a daily-partitioned ``<name>_cost_events`` asset.

A collector run reads the window outside the store lock, replaces the window's days in one
swap, and reports each day's figures. Which source it reads is decided here, once: the
configured source; else, on the embedded store (and never with POLO_SAMPLE=0), the same
source pointed at the sample world; else nothing is collected.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import dagster as dg
import pandas as pd

from polo_pipelines.defs import metadata
from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import env_flag
from polo_pipelines.sources import by_name
from polo_pipelines.sources.http import SourceUnavailable, scrub
from polo_pipelines.sources.secrets import secret_values
from polo_pipelines.sources.spec import Collected, CostSource, SourceSpec
from polo_pipelines.store.events import DayLoad, add_properties, as_utc, day_range, replace_days, window_label
from polo_pipelines.store.storage import Store, StoreBusy, StoreError, StoreFull

T = TypeVar("T")

COLLECTOR_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
SAMPLE_PROPERTIES = {"source": "sample"}
# The daily schedule re-collects T-3..T-1 at 06:00 UTC: a collector not materialized for 30 hours missed a run (warn),
# for 54 hours two (fail). Billing data landing a day or two late is the lookback's business, not staleness.
COLLECTOR_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=54), warn_window=dt.timedelta(hours=30))


def read_or_fail(read: Callable[[], T]) -> T:
    """Bad input fails the step without retries (it would fail the same way again), naming source, field and partition;
    an API that kept failing through the client's own retries fails it with Dagster's retry policy still allowed.

    Every message is scrubbed of every secret the process holds, and the original exception is not chained: a client's
    error may quote its request (a session token, a form-encoded secret), and Dagster records a cause's text too."""
    try:
        return read()
    except PoloInputError as exc:
        raise dg.Failure(
            description=scrub(str(exc), secret_values()),
            metadata={"source": exc.source, "field": exc.field or "", "partition": exc.partition or ""},
            allow_retries=False,
        ) from None
    except SourceUnavailable as exc:
        raise dg.Failure(
            description=scrub(str(exc), secret_values()), metadata={"source": exc.source, "partition": exc.partition or ""}
        ) from None
    except Exception as exc:  # a third-party client's own error
        reason = scrub(f"{type(exc).__name__}: {exc}", secret_values())
        # a bug or malformed data fails the same way again; a dropped connection may not
        transient = isinstance(exc, (ConnectionError, TimeoutError, OSError))
        raise dg.Failure(description=f"the read failed: {reason[:2000]}", allow_retries=transient) from None


class CollectorConfig(dg.Config):
    """Run config of a collector run."""

    # A day that held events and that the source now holds nothing for is refused (a broken delivery, almost always);
    # set this when the days really are empty now, and the metadata lists the days that went to zero.
    allow_empty_days: bool = False


class AsOfConfig(dg.Config):
    """Run config of assets that observe "now" (inventory snapshots, rule evaluations): ``as_of`` replays a moment."""

    as_of: str = ""  # ISO time; empty means now

    def moment(self) -> dt.datetime:
        if not self.as_of:
            return dt.datetime.now(dt.UTC)
        return as_utc(dt.datetime.fromisoformat(self.as_of))


def sample_mode(configured: bool, embedded: bool) -> str:
    """'live' for a configured source; otherwise 'sample' (the sample world, on the embedded store unless
    POLO_SAMPLE_TO_SERVER=1, and never with POLO_SAMPLE=0) or 'skip'."""
    if configured:
        return "live"
    if env_flag("POLO_SAMPLE", default=True) and (embedded or env_flag("POLO_SAMPLE_TO_SERVER")):
        return "sample"
    return "skip"


def source_to_read(spec: SourceSpec, configured: CostSource, embedded: bool) -> tuple[str, CostSource | None]:
    """The sample-world switch, the only one: which source a collector run reads, and in which mode."""
    mode = sample_mode(configured.configured, embedded)
    if mode == "sample" and not spec.sample:
        mode = "skip"
    if mode == "live":
        return mode, configured
    if mode == "sample":
        return mode, spec.sample_source()
    return mode, None


def collector_asset(spec: SourceSpec, daily_partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The collector asset of a registered source, reading through the resource named after it."""

    def collector(context, config):
        window = context.partition_time_window
        yield from materialize(
            context,
            spec,
            context.resources.clickhouse,
            getattr(context.resources, spec.resource_key),
            window.start.date(),
            window.end.date(),
            allow_empty_days=config.allow_empty_days,
        )

    # This module postpones annotations, and Dagster reads the config class from the parameter's annotation.
    collector.__annotations__ = {"config": CollectorConfig}
    collector = dg.asset(
        name=spec.asset_name,
        description=spec.description,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=spec.name,
        kinds={"clickhouse", *spec.kinds},
        retry_policy=COLLECTOR_RETRY,
        output_required=False,
        pool=spec.pool,
        required_resource_keys={"clickhouse", spec.resource_key},
        freshness_policy=COLLECTOR_FRESHNESS,
        deps=[by_name(name).asset_name for name in spec.after],
        metadata={"dagster/table_name": "polo.resource_events", "collector": spec.collector},
    )(collector)
    return collector


def materialize(
    context: dg.AssetExecutionContext,
    spec: SourceSpec,
    clickhouse,
    configured: CostSource,
    start: dt.date,
    end: dt.date,
    *,
    allow_empty_days: bool = False,
) -> Iterator[dg.MaterializeResult]:
    """The whole body of a collector asset: read the window (outside the store lock), replace its days, report."""
    mode, source = source_to_read(spec, configured, clickhouse.is_embedded)
    if source is None:
        context.log.info(
            f"{spec.name} is not configured ({spec.configured_by}) and the sample world is off for it "
            "(POLO_SAMPLE=0, a ClickHouse server without POLO_SAMPLE_TO_SERVER=1, or no sample of this source): "
            "nothing collected, nothing materialized"
        )
        return
    needs = None
    if hasattr(source, "needs"):  # a source that reads what the store holds first (CloudWatch: the costly resources)
        with store_failures(), clickhouse.session() as store:
            needs = source.needs(store, start, end)
    collected = read_or_fail(lambda: source.collect(start, end) if needs is None else source.collect(start, end, needs))
    if mode == "sample":
        collected.events = add_properties(collected.events, SAMPLE_PROPERTIES)
    with store_failures(), clickhouse.session() as store:
        loads = write(store, collected, start, end, context.run.run_id, allow_empty_days)
    context.log.info(f"{collected.collector} {window_label(start, end)}: {len(collected.events)} events from {collected.source}")
    emptied = [str(load.day) for load in loads if load.emptied]
    if emptied:
        context.log.warning(f"{collected.collector}: {len(emptied)} day(s) went to zero as asked (allow_empty_days): {', '.join(emptied)}")
    yield result(context, spec, collected, loads, start, end)


def write(store: Store, collected: Collected, start: dt.date, end: dt.date, run_id: str, allow_empty_days: bool = False) -> list[DayLoad]:
    try:
        return replace_days(
            store,
            collected.events,
            collector=collected.collector,
            days=day_range(start, end),
            source=collected.source,
            sources=collected.sources,
            run_id=run_id,
            allow_empty_days=allow_empty_days,
        )
    except PoloInputError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"source": exc.source, "field": exc.field or "", "partition": exc.partition or ""},
            allow_retries=False,
        ) from None


@contextlib.contextmanager
def store_failures() -> Iterator[None]:
    """The store's own failures as a clear step failure: a full disk or a busy store is not retried for minutes
    (it fails the same way again); a server that did not answer may be, by the retry policy."""
    try:
        yield
    except (StoreFull, StoreBusy) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except StoreError as exc:
        raise dg.Failure(description=str(exc)) from None


DAYS_TABLE_MAX = 7


def describe_sources(sources: list[str]) -> str:
    """What a run read, short enough to read at a glance: the count, the shared folder, then each file's own name."""
    if not sources:
        return "-"
    if len(sources) == 1:
        return sources[0]
    shared = os.path.commonprefix(sources)
    shared = shared[: shared.rfind("/") + 1] if "/" in shared else ""
    names = [s[len(shared) :] for s in sources]
    shown = ", ".join(names[:4]) + (f", … ({len(names) - 4} more)" if len(names) > 4 else "")
    return f"{len(sources)} files{f' under {shared}' if shared else ''}: {shown}"


def day_metadata(load: DayLoad) -> dict:
    """One partition's own figures: what the Plots view draws and a partition's page shows."""
    return {
        "dagster/row_count": load.row_count,
        "day": str(load.day),
        "cost_usd": metadata.plotted(load.value_total),
        "cost": metadata.money(load.value_total),
        "billed_usd": metadata.plotted(load.billed_total),
        "billed": metadata.money(load.billed_total),
        "cost_before": metadata.money(load.previous_total),
        "events_before": load.previous_rows,
    }


def result(context, spec: SourceSpec, collected: Collected, loads: list[DayLoad], start: dt.date, end: dt.date) -> dg.MaterializeResult:
    """Each partition carries its own day's figures; the run's totals go beside them, named run_* (a single-run
    backfill over a range records one materialization per day, and a day must not show the range's figures)."""
    events = collected.events
    if spec.kind == "activity":  # no cost: what happened, counted
        top = events.groupby(list(spec.top_costs_by)).size().sort_values(ascending=False).head(10).rename("events").reset_index()
        top_table = {"top_activity": metadata.table(top)}
    else:
        top = (
            events[events["event_type"] == "cost"]
            .groupby(list(spec.top_costs_by))["value"]
            .sum()
            .sort_values(ascending=False)
            .head(10)
            .reset_index()
            .rename(columns={"value": "cost"})
        )
        top_table = {"top_costs": metadata.table(top, money_cols=("cost",))}
    by_day = pd.DataFrame(
        {
            "day": [str(load.day) for load in loads],
            "events": [load.row_count for load in loads],
            "cost": [load.value_total for load in loads],
            "billed": [load.billed_total for load in loads],
            "events_before": [load.previous_rows for load in loads],
            "cost_before": [load.previous_total for load in loads],
        }
    )
    for load in loads:
        context.add_asset_metadata(day_metadata(load), partition_key=str(load.day))
    run_metadata = {
        # the day's own keys first, so a partition's page opens on its own figures (each partition replaces the values)
        **day_metadata(loads[-1]),
        "run_window": window_label(start, end),
        "run_days": len(loads),
        "run_events": int(sum(load.row_count for load in loads)),
        "run_cost": metadata.money(sum(load.value_total for load in loads)),
        "run_billed": metadata.money(sum(load.billed_total for load in loads)),
        # a lookback run's few days side by side; a long backfill's days are each partition's own (and the Plots view)
        **({"days": metadata.table(by_day, money_cols=("cost", "billed", "cost_before"))} if len(loads) <= DAYS_TABLE_MAX else {}),
        **top_table,
        "sources": dg.MetadataValue.text(describe_sources(collected.sources)),
        "days_emptied": dg.MetadataValue.text(", ".join(str(load.day) for load in loads if load.emptied) or "-"),
        **{k: v if isinstance(v, float) else int(v) for k, v in collected.counts.items()},
    }
    return dg.MaterializeResult(metadata=run_metadata)
