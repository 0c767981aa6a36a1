"""Changing the rule file: add, replace, enable and disable rules, validated as the file is, written back in the
same format (so the change can be reviewed in version control), then synced to polo.budget_rules.

The CLI (``polo rules add|enable|disable``) and the web API and pages change rules through these functions only.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polo_pipelines.rules import ruleset
from polo_pipelines.rules.ruleset import Rule, RuleError

_writing = threading.Lock()  # one change of the file at a time in this process


class UnknownRule(RuleError):
    """The rule file has no rule with that id."""


class RuleTaken(RuleError):
    """The rule file already has a rule with that id."""


def find(rules: Sequence[Rule], rule_id: str, path: Path) -> Rule:
    for rule in rules:
        if rule.rule_id == rule_id:
            return rule
    raise UnknownRule(f"no rule {rule_id!r} in {path}")


def added(rules: Sequence[Rule], docs: Sequence[Any], path: Path) -> list[Rule]:
    """``rules`` with the rules of ``docs`` after them, each validated as the file's rules are."""
    new = [ruleset.parse_rule(d, f"new rule #{i + 1}") for i, d in enumerate(docs)]
    taken = {r.rule_id for r in rules} & {r.rule_id for r in new}
    if taken:
        raise RuleTaken(f"rule id(s) already in {path}: {', '.join(sorted(taken))}")
    return [*rules, *new]


def replaced(rules: Sequence[Rule], rule_id: str, doc: Mapping[str, Any], path: Path) -> list[Rule]:
    """``rules`` with the rule ``rule_id`` replaced by ``doc`` (same id), in its place."""
    find(rules, rule_id, path)
    if doc.get("id", rule_id) != rule_id:
        raise RuleError(f"rule {rule_id}: the id cannot change (got {doc.get('id')!r}); add a new rule instead")
    new = ruleset.parse_rule({**doc, "id": rule_id}, f"rule {rule_id}")
    return [new if r.rule_id == rule_id else r for r in rules]


def switched(rules: Sequence[Rule], rule_id: str, enabled: bool, path: Path) -> list[Rule]:
    find(rules, rule_id, path)
    return [dataclasses.replace(r, enabled=enabled) if r.rule_id == rule_id else r for r in rules]


def change(path: Path, edit, store=None) -> tuple[list[Rule], dict[str, int]]:
    """Load the file, apply ``edit(rules) -> rules``, write it back, sync the table when a store is given."""
    with _writing:
        rules = edit(ruleset.load(path))
        ruleset.save(rules, path)
    counts = ruleset.sync(store, rules) if store is not None else {}
    return rules, counts
