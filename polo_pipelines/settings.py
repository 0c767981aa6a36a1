"""Where Polo keeps its files and which settings come from the environment (see .env.example)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def polo_home() -> Path:
    """The folder holding the embedded store, the sample world and the Dagster instance."""
    return Path(os.environ.get("POLO_HOME") or PROJECT_ROOT / ".polo").resolve()


def clickhouse_dsn() -> str:
    """POLO_CLICKHOUSE_DSN, else the embedded store under POLO_HOME."""
    return os.environ.get("POLO_CLICKHOUSE_DSN") or f"chdb://{polo_home() / 'clickhouse'}"


def sample_dir() -> Path:
    return polo_home() / "sample"


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def fx_rates() -> dict[str, float]:
    """POLO_FX_RATES: USD per unit of each billing currency, as JSON, e.g. {"EUR": 1.08}."""
    import json

    raw = os.environ.get("POLO_FX_RATES", "").strip()
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
        return {str(k).upper(): float(v) for k, v in doc.items()}
    except (ValueError, AttributeError, TypeError):
        raise ValueError('POLO_FX_RATES must be a JSON object of currency -> USD rate, e.g. {"EUR": 1.08}') from None


def lookback() -> int:
    """POLO_LOOKBACK_DAYS (default 3): the days the daily run re-collects, because billing data lands late and is
    restated; a source's last days are unsettled until they pass it. Read each time: a deployment's setting is in force."""
    raw = os.environ.get("POLO_LOOKBACK_DAYS", "3")
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"POLO_LOOKBACK_DAYS must be a whole number of days, got {raw!r}") from None
    if not 1 <= days <= 90:
        raise ValueError(f"POLO_LOOKBACK_DAYS must be between 1 and 90, got {days}")
    return days


def month_close_day() -> int:
    """POLO_MONTH_CLOSE_DAY (default 5): the day of the month on which the previous month is collected again
    whole, once its bill is final (the unused part of reservation fees, month-end credits and refunds restate
    days long past the lookback)."""
    raw = os.environ.get("POLO_MONTH_CLOSE_DAY", "5")
    try:
        day = int(raw)
    except ValueError:
        raise ValueError(f"POLO_MONTH_CLOSE_DAY must be a day of the month, got {raw!r}") from None
    if not 1 <= day <= 28:
        raise ValueError(f"POLO_MONTH_CLOSE_DAY must be between 1 and 28, got {day}")
    return day


DEFAULT_START_DATE = "2025-01-01"


def start_date_setting():
    """POLO_START_DATE as set, or None (``sources.sample.first_partition_day`` gives the default)."""
    import datetime as dt

    raw = os.environ.get("POLO_START_DATE", "")
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"POLO_START_DATE must be a date (YYYY-MM-DD), got {raw!r}") from None
