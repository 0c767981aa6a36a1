"""Where the rules come from (the rule file) and where notifications go (Slack webhook, SMTP)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from polo_pipelines.rules import ruleset as rules
from polo_pipelines.rules.notify import Channels


class RulesResource(dg.ConfigurableResource):
    """The rule file (POLO_RULES_FILE, default config/rules.yaml) and the notification channels (see notify.py)."""

    rules_file: str | None = None

    def path(self) -> Path:
        return Path(self.rules_file) if self.rules_file else rules.rules_file()

    def load(self) -> list[rules.Rule]:
        return rules.load(self.path())

    def channels(self) -> Channels:
        return Channels.from_env()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"rules": RulesResource(rules_file=os.environ.get("POLO_RULES_FILE") or None)})
