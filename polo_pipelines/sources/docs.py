"""docs/sources.md, rendered from the source registry: ``python -m polo_pipelines.sources.docs`` rewrites it."""

from __future__ import annotations

from pathlib import Path

from polo_pipelines.settings import PROJECT_ROOT
from polo_pipelines.sources import SOURCES

PAGE = PROJECT_ROOT / "docs" / "sources.md"

INTRO = """# Sources

Written by `python -m polo_pipelines.sources.docs` from the source registry
(`polo_pipelines/sources/__init__.py`); a test fails when this page and the registry disagree.

Every source below is one folder of `polo_pipelines/sources/` and one collector asset,
`<source>_cost_events`, daily-partitioned (UTC) and writing its own `collector` value in
`polo.resource_events`. A source that is not configured reads the sample world on the embedded
store (`POLO_SAMPLE=1`, the default) where it has one, and is skipped otherwise.
Secrets come from the environment variable, else from AWS Secrets Manager under the name given
(with `POLO_SECRETS_MANAGER=1`). `polo check-connections` tries each configured source's credentials.

| source | collector | platform | configured by | sample world |
|---|---|---|---|---|
"""


def sources_page() -> str:
    rows = [
        f"| {s.name} | `{s.collector}` | {s.platform or 'each row’s provider'} | `{s.configured_by}` | {s.sample or 'none'} |"
        for s in SOURCES
    ]
    parts = [INTRO + "\n".join(rows) + "\n"]
    for s in SOURCES:
        lines = [f"## {s.name}", "", s.description, "", "| setting | what it is | secret in Secrets Manager |", "|---|---|---|"]
        lines += [f"| `{x.env}` | {x.help} | {f'`{x.secret}`' if x.secret else ''} |" for x in s.settings]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def main() -> None:
    Path(PAGE).parent.mkdir(exist_ok=True)
    Path(PAGE).write_text(sources_page())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
