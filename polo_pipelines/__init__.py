"""Polo: daily cost collection into ClickHouse, hierarchy roll-ups and cost deltas, on Dagster."""
