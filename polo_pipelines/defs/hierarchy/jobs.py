"""Rebuild the ancestry (and with it the node rollup) on demand, e.g. after editing config/hierarchy.yaml."""

import dagster as dg

refresh_hierarchy = dg.define_asset_job(
    "refresh_hierarchy",
    selection=["resource_ancestry"],
    description="Rebuild resource_ancestry from config/hierarchy.yaml and the node rollup from it.",
)
