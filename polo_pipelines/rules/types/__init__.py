"""The rule types: one module each, and the registry every other place reads (parsing, compiling, the evaluator,
the asset checks, the CLI's choices).

A type says once what its condition may hold and how it is checked (``parse_condition``), whether it
watches costs (cadence hourly, over a window) or the inventory's state (every 15 minutes), how it is
compiled into one parameterized query returning its breaches (``compile``), and how a breach reads
(``message``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

    from polo_pipelines.rules.ruleset import Rule
    from polo_pipelines.rules.sql import Compiled, Context, Window


@dataclass(frozen=True)
class RuleType:
    name: str
    watches: str  # "costs" (hourly, over a window of days) or "state" (the inventory, every 15 minutes)
    condition_keys: frozenset[str]
    parse_condition: Callable[[dict[str, Any], str, bool], dict[str, Any]]  # (condition, where, per node type)
    compile: Callable[[Rule, dt.datetime, Context], Compiled]
    message: Callable[[Rule, Any], str]  # a breach row (resource_arn, node_id, actual_value, threshold_value)
    window: Callable[[Rule, dt.datetime], Window] | None = None  # cost types: the days and charges summed
    node_costs: bool = False  # reads each node's resources' costs even without filters (a share of the node)
    # breaches beyond the query's, e.g. a budget's month heading past it: (store, rule, now, nodes already breached)
    more_breaches: Callable[[Any, Rule, dt.datetime, set[str]], Any] | None = None

    @property
    def cadence(self) -> str:
        return "hourly" if self.watches == "costs" else "15min"


def _registry() -> dict[str, RuleType]:
    from polo_pipelines.rules.types import budget, config, existence, lifecycle, ratio

    return {t.name: t for t in (budget.TYPE, existence.TYPE, config.TYPE, lifecycle.TYPE, ratio.TYPE)}


TYPES: dict[str, RuleType] = _registry()
