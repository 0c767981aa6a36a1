"""Query parameters, declared once: each endpoint's list of ``Param`` validates a request (a bad or unknown parameter
is a 400 naming it) and is its OpenAPI description."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polo_pipelines.drilldown.periods import DeltaError, Periods, Settings

MAX_TEXT = 512  # no node id, ARN or hierarchy name is longer


class BadParam(ValueError):
    """A parameter that cannot be taken as given: the message names it."""

    def __init__(self, name: str, message: str):
        self.name = name
        super().__init__(f"{name}: {message}")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # date | string | number | integer | boolean | enum
    description: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    many: bool = False  # comma-separated values (enum)

    def parse(self, raw: str | None) -> Any:
        if raw is None or raw == "":
            if self.required:
                raise BadParam(self.name, "is required")
            return self.default
        if len(raw) > MAX_TEXT:
            raise BadParam(self.name, f"is longer than {MAX_TEXT} characters")
        if self.kind == "date":
            try:
                return dt.date.fromisoformat(raw)
            except ValueError:
                raise BadParam(self.name, f"not a date (YYYY-MM-DD): {raw!r}") from None
        if self.kind in ("number", "integer"):
            try:
                value = int(raw) if self.kind == "integer" else float(raw)
            except ValueError:
                raise BadParam(self.name, f"not {'a whole number' if self.kind == 'integer' else 'a number'}: {raw!r}") from None
            low = -math.inf if self.minimum is None else self.minimum
            high = math.inf if self.maximum is None else self.maximum
            if not (math.isfinite(value) and low <= value <= high):
                raise BadParam(self.name, f"must be a finite number from {low:g} to {high:g}, got {raw!r}")
            return value
        if self.kind == "boolean":
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise BadParam(self.name, f"must be true or false, got {raw!r}")
        if self.kind == "enum":
            values = [v.strip() for v in raw.split(",") if v.strip()] if self.many else [raw]
            for value in values:
                if value not in self.choices:
                    raise BadParam(self.name, f"{value!r} is not one of {', '.join(self.choices)}")
            return values if self.many else values[0]
        if any(ord(c) < 32 for c in raw):
            raise BadParam(self.name, "holds control characters")
        return raw

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "date": {"type": "string", "format": "date"},
            "string": {"type": "string", "maxLength": MAX_TEXT},
            "number": {"type": "number"},
            "integer": {"type": "integer"},
            "boolean": {"type": "boolean"},
            "enum": {"type": "string", "enum": list(self.choices)},
        }[self.kind]
        if self.many:
            schema = {"type": "string", "description": "comma-separated: " + ", ".join(self.choices)}
        for key, value in (("minimum", self.minimum), ("maximum", self.maximum), ("default", self.default)):
            if value is not None and not (key == "default" and isinstance(value, (dt.date, list))):
                schema[key] = value
        return {"name": self.name, "in": "query", "required": self.required, "description": self.description, "schema": schema}


def read(query: Mapping[str, str], params: Sequence[Param]) -> dict[str, Any]:
    """Every declared parameter's value; an undeclared one is refused, naming it and what is accepted."""
    known = {p.name for p in params}
    for name in query:
        if name not in known:
            raise BadParam(name, f"unknown parameter; this endpoint takes {', '.join(sorted(known)) or 'none'}")
    return {p.name: p.parse(query.get(p.name)) for p in params}


# ------------------------------------------------------------------ the drill-down's periods and settings

PERIODS = (
    Param("currentStart", "date", "first day of the current period (default: the last complete ISO week's Monday)"),
    Param("currentEnd", "date", "the day after the current period's last day (end is exclusive)"),
    Param("compareStart", "date", "first day of the period compared against (default: the period just before, same length)"),
    Param("compareEnd", "date", "the day after the compare period's last day (exclusive)"),
)
SETTINGS = (
    Param("nodeThreshold", "number", "a node is listed when its |delta| exceeds this (USD)", default=1.0, minimum=0, maximum=1e12),
    Param("resourceThreshold", "number", "a resource is listed when its |delta| exceeds this (USD)", default=0.5, minimum=0, maximum=1e12),
    Param("includeCredits", "boolean", "count credits, refunds and tax too", default=False),
)


@dataclass(frozen=True)
class Asked:
    periods: Periods
    settings: Settings
    values: dict[str, Any] = field(default_factory=dict)


def periods_of(values: Mapping[str, Any], today: dt.date) -> Periods:
    """The periods a request names: both given; the current one and the one before; or the last complete week."""
    cs, ce, ps, pe = (values.get(k) for k in ("currentStart", "currentEnd", "compareStart", "compareEnd"))
    if (cs is None) != (ce is None):
        raise BadParam("currentEnd" if ce is None else "currentStart", "currentStart and currentEnd go together")
    if (ps is None) != (pe is None):
        raise BadParam("compareEnd" if pe is None else "compareStart", "compareStart and compareEnd go together")
    if cs is None and ps is not None:
        raise BadParam("currentStart", "a compare period needs the current period too")
    try:
        if cs is None:
            return Periods.last_complete_week(today)
        if ps is None:
            return Periods.preceding(cs, ce)
        return Periods(cs, ce, ps, pe)
    except DeltaError as exc:
        raise BadParam("currentStart" if "current" in str(exc) or "overlap" in str(exc) else "compareStart", str(exc)) from None
