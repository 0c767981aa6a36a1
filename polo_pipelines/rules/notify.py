"""Notifications: each new violation once, to its rule's channel (Slack incoming webhook or email over SMTP).

A violation is sent while it is open and not yet ``notified``; right after the channel
accepts it, a new version of the row records ``notified = true`` and ``notified_at``. A
send that fails (the webhook keeps answering 5xx after the client's retries, the SMTP
server refuses) leaves the row as it was, so the next evaluation tries again; one that
succeeded is never sent again. Delivery is at least once: a receiver that delivered but answered
an error, or a run killed between sending and marking, gets the message again. So every message
carries the violation id as an ``Idempotency-Key`` header (email also as its Message-ID), and a
receiver can drop the repeat.

Settings: ``POLO_SLACK_WEBHOOK_URL`` (or the secret ``polo/slack-webhook``); ``POLO_SMTP_HOST``,
``POLO_SMTP_PORT`` (587), ``POLO_SMTP_USER``, ``POLO_SMTP_PASSWORD`` (or ``polo/smtp-password``),
``POLO_SMTP_STARTTLS`` (true when a user is set), ``POLO_ALERT_EMAIL_FROM``, ``POLO_ALERT_EMAIL_TO``.
A rule's channel is ``slack``, ``email`` or ``email:<address>``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage

import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.rules.evaluate import VIOLATION_COLUMNS, write_violations
from polo_pipelines.rules.ruleset import Rule, channel_problem
from polo_pipelines.sources.http import ApiClient, RetryPolicy, scrub
from polo_pipelines.store.versions import next_version

log = logging.getLogger("polo.notify")
# Every notification carries its violation id under this header (and email as its Message-ID too): a receiver that
# got a message but answered an error, or a run that died between sending and marking, sends it again, and the
# receiver can tell the repeat by the key.
IDEMPOTENCY_HEADER = "Idempotency-Key"
SEVERITY_ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


@dataclass
class Channels:
    slack_webhook: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool | None = None
    email_from: str = "polo@localhost"
    email_to: str = ""
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=3, base=1.0, max_total_wait=30.0))

    @classmethod
    def from_env(cls) -> Channels:
        from polo_pipelines.sources.secrets import get_secret

        starttls = os.environ.get("POLO_SMTP_STARTTLS")
        return cls(
            slack_webhook=get_secret("polo/slack-webhook").value,
            smtp_host=os.environ.get("POLO_SMTP_HOST", ""),
            smtp_port=int(os.environ.get("POLO_SMTP_PORT") or 587),
            smtp_user=os.environ.get("POLO_SMTP_USER", ""),
            smtp_password=get_secret("polo/smtp-password").value,
            smtp_starttls=None if starttls in (None, "") else starttls.lower() in ("1", "true", "yes"),
            email_from=os.environ.get("POLO_ALERT_EMAIL_FROM") or "polo@localhost",
            email_to=os.environ.get("POLO_ALERT_EMAIL_TO", ""),
        )


@dataclass
class Sent:
    sent: int = 0
    failed: int = 0
    skipped: int = 0  # no channel configured for the rule
    errors: list[str] = field(default_factory=list)

    def done(self, store, record: dict, **marked) -> None:
        """The violation's delivery recorded (a new version of its row) right after the receiver accepted it."""
        write_violations(store, [{**record, **marked, "_version": next_version(store, "polo.rule_violations")}])
        self.sent += 1

    def failure(self, v, exc: Exception, secrets: tuple[str, ...], what: str) -> None:
        """A delivery that failed: counted, its reason kept and logged, scrubbed of the receiver's secrets."""
        self.failed += 1
        reason = scrub(f"{type(exc).__name__}: {exc}", secrets)
        self.errors.append(f"{v.violation_id} ({v.rule_id}): {reason}")
        log.warning("%s for violation %s not delivered (will retry): %s", what, v.violation_id, reason)


def pending(store) -> pd.DataFrame:
    return store.query_df(
        f"SELECT {', '.join(VIOLATION_COLUMNS)} FROM polo.rule_violations FINAL WHERE resolved_at IS NULL AND NOT notified ORDER BY detected_at, violation_id"
    )


def text(v) -> str:
    what = v.resource_arn or v.node_id
    return f"{SEVERITY_ICON.get(v.severity, '')} [{v.severity}] {v.rule_name}: {v.message} (violation {v.violation_id}, {what})".strip()


def send_slack(channels: Channels, v) -> None:
    # the webhook's path is its secret: scrubbing a URL scrubs its path too (see http.encodings)
    client = ApiClient("slack", secrets=(channels.slack_webhook,), retry=channels.retry)
    client.request("POST", channels.slack_webhook, json={"text": text(v)}, headers={IDEMPOTENCY_HEADER: str(v.violation_id)})


def send_email(channels: Channels, v, to: str) -> None:
    message = EmailMessage()
    message["Subject"] = f"[polo {v.severity}] {v.rule_name}"
    message["From"] = channels.email_from
    message["To"] = ", ".join(a.strip() for a in to.split(","))
    message["Message-ID"] = f"<{v.violation_id}@polo>"
    message[IDEMPOTENCY_HEADER] = str(v.violation_id)
    message.set_content(text(v))
    with smtplib.SMTP(channels.smtp_host, channels.smtp_port, timeout=30) as smtp:
        if channels.smtp_starttls or (channels.smtp_starttls is None and channels.smtp_user):
            smtp.starttls()
        if channels.smtp_user:
            smtp.login(channels.smtp_user, channels.smtp_password)
        smtp.send_message(message)


def notify(store, rules: list[Rule], channels: Channels, now: dt.datetime | None = None) -> Sent:
    """Send every open, un-notified violation once; mark each right after its channel accepted it.

    One notification's failure (a channel refused, a receiver down, a malformed address that
    slipped into the store) is counted and logged and never stops the others."""
    now = now or dt.datetime.now(dt.UTC)
    by_rule = {r.rule_id: r for r in rules}
    result = Sent()
    from types import SimpleNamespace

    for record in pending(store).to_dict("records"):  # records, not itertuples: that renames _version
        v = SimpleNamespace(**record)
        rule = by_rule.get(v.rule_id)
        channel = rule.channel if rule else ""
        try:
            problem = channel_problem(channel)
            if problem:
                raise PoloInputError(problem, source="rules", field="channel", partition=v.rule_id)
            if channel == "slack" and channels.slack_webhook:
                send_slack(channels, v)
            elif channel.startswith("email") and channels.smtp_host and (channel[6:] or channels.email_to):
                send_email(channels, v, channel[6:] or channels.email_to)
            else:
                result.skipped += 1
                continue
        except Exception as exc:  # noqa: BLE001 - isolate each notification; the reason is kept, scrubbed
            result.failure(v, exc, (channels.slack_webhook, channels.smtp_password), "notification")
            continue
        result.done(store, record, notified=True, notified_at=now)
    return result


def awaiting_action(store) -> pd.DataFrame:
    return store.query_df(
        f"SELECT {', '.join(VIOLATION_COLUMNS)} FROM polo.rule_violations FINAL WHERE resolved_at IS NULL AND NOT acted ORDER BY detected_at, violation_id"
    )


def action_payload(v, rule: Rule) -> dict:
    """What an action webhook receives: the violation, enough for an enforcer to act on (throttle the operation)."""
    return {
        "violation_id": str(v.violation_id),
        "rule_id": v.rule_id,
        "rule_name": v.rule_name,
        "severity": v.severity,
        "resource": v.resource_arn,
        "node": v.node_id,
        "scope": rule.scope_label,
        "actual_usd": float(v.actual_value),
        "threshold_usd": float(v.threshold_value),
        "period": rule.condition.get("period", ""),
        "detected_at": pd.Timestamp(v.detected_at).isoformat(),
        "message": v.message,
    }


def act(store, rules: list[Rule], now: dt.datetime | None = None, retry: RetryPolicy | None = None) -> Sent:
    """Call each open violation's rule action (``webhook:<name>``: a POST of the violation as JSON, its id as the
    ``Idempotency-Key``) once; mark it acted right after the webhook accepted it. As with notifications, a webhook that
    keeps failing leaves the violation to the next evaluation, and one that accepted is never called again."""
    from polo_pipelines.sources.secrets import action_webhook_secret, get_secret

    now = now or dt.datetime.now(dt.UTC)
    retry = retry or RetryPolicy(attempts=3, base=1.0, max_total_wait=30.0)
    by_rule = {r.rule_id: r for r in rules if r.action}
    result = Sent()
    if not by_rule:
        return result
    urls: dict[str, str] = {}
    for record in awaiting_action(store).to_dict("records"):
        from types import SimpleNamespace

        v = SimpleNamespace(**record)
        rule = by_rule.get(v.rule_id)
        if rule is None:
            continue
        if rule.action not in urls:
            secret, env = action_webhook_secret(rule.action)
            urls[rule.action] = get_secret(secret, env=env).value
        url = urls[rule.action]
        if not url:
            result.skipped += 1
            continue
        try:
            client = ApiClient("action", secrets=(url,), retry=retry)
            client.request("POST", url, json=action_payload(v, rule), headers={IDEMPOTENCY_HEADER: str(v.violation_id)})
        except Exception as exc:  # noqa: BLE001 - isolate each call; the reason is kept, scrubbed
            result.failure(v, exc, tuple(urls.values()), f"action {rule.action}")
            continue
        result.done(store, record, acted=True, acted_at=now)
    return result


def overdue(store, now: dt.datetime, hours: float = 24.0) -> pd.DataFrame:
    """Open violations whose rule has a channel and that have waited more than ``hours`` for their notification."""
    return store.query_df(
        """
        SELECT violation_id, rule_id, detected_at FROM polo.rule_violations FINAL
        WHERE resolved_at IS NULL AND NOT notified AND detected_at < {cutoff:DateTime64(3, 'UTC')}
          AND rule_id IN (SELECT rule_id FROM polo.budget_rules FINAL WHERE notification_channel != '')
        ORDER BY detected_at
        """,
        {"cutoff": (now - dt.timedelta(hours=hours)).replace(tzinfo=None)},
        columns=["violation_id", "rule_id", "detected_at"],
    )
