"""Notifications reach a real local webhook receiver and a real local SMTP server exactly once, retried on failure."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from aiosmtpd.controller import Controller
from werkzeug import Response

from polo_pipelines.rules import evaluate, notify
from polo_pipelines.rules import ruleset as rules
from polo_pipelines.sources.http import RetryPolicy

from .test_rules import NOW, costs, rule  # noqa: F401  (the fixture)

WEBHOOK_PATH = "/services/T000/B000/SECRETxyz"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp():
    import socket

    with socket.socket() as probe:  # a free port: the controller's start-up check cannot use port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def budget(channel: str) -> rules.Rule:
    return rule(
        {
            "id": f"notify-{channel.split(':')[0]}",
            "type": "budget",
            "scope": {"filters": {"untagged": True}},
            "condition": {"max_usd": 1, "period": "day", "per": "resource"},
            "channel": channel,
        }
    )


def channels(**kwargs) -> notify.Channels:
    return notify.Channels(retry=RetryPolicy(attempts=2, base=0.01, cap=0.02, max_total_wait=1), **kwargs)


def test_slack_once_retried_after_a_failure_and_never_twice(costs, httpserver, caplog):  # noqa: F811
    r = budget("slack")
    evaluate.evaluate(costs, [r], NOW)
    hook = httpserver.url_for(WEBHOOK_PATH)
    httpserver.expect_request(WEBHOOK_PATH, method="POST").respond_with_response(Response("down", status=503))
    with caplog.at_level(logging.DEBUG):
        failed = notify.notify(costs, [r], channels(slack_webhook=hook), NOW)
    assert (failed.sent, failed.failed) == (0, 1)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug")]  # the receiver's own access log aside
    assert ours and not any("SECRETxyz" in line for line in ours) and "SECRETxyz" not in " ".join(failed.errors)
    assert evaluate.violations(costs)["notified"].tolist() == [False]

    httpserver.clear()
    httpserver.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("ok")
    sent = notify.notify(costs, [r], channels(slack_webhook=hook), NOW)
    assert sent.sent == 1
    assert notify.notify(costs, [r], channels(slack_webhook=hook), NOW).sent == 0  # already notified
    evaluate.evaluate(costs, [r], NOW + dt.timedelta(hours=1))  # the breach persists: no new violation, no new message
    assert notify.notify(costs, [r], channels(slack_webhook=hook), NOW).sent == 0
    posted = [req for req, _ in httpserver.log if req.path == WEBHOOK_PATH]
    assert len(posted) == 1 and "i-bare" in posted[0].get_json()["text"]
    row = evaluate.violations(costs).iloc[0]
    assert row["notified"]


def test_email_once_with_the_violation_as_message_id(costs, smtp):  # noqa: F811
    inbox, port = smtp
    r = budget("email:finops@example.com")
    evaluate.evaluate(costs, [r], NOW)
    config = channels(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, email_from="polo@example.com")
    assert notify.notify(costs, [r], config, NOW).sent == 1
    assert notify.notify(costs, [r], config, NOW).sent == 0
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message.rcpt_tos == ["finops@example.com"]
    violation_id = evaluate.violations(costs)["violation_id"][0]
    assert f"Message-ID: <{violation_id}@polo>" in message.content.decode()


def test_unreachable_smtp_leaves_the_violation_for_the_next_run(costs):  # noqa: F811
    r = budget("email:finops@example.com")
    evaluate.evaluate(costs, [r], NOW)
    result = notify.notify(costs, [r], channels(smtp_host="127.0.0.1", smtp_port=9, smtp_starttls=False), NOW)
    assert (result.sent, result.failed) == (0, 1)
    assert evaluate.violations(costs)["notified"].tolist() == [False]


def test_a_rule_without_a_configured_channel_is_skipped(costs):  # noqa: F811
    r = budget("slack")
    evaluate.evaluate(costs, [r], NOW)
    assert notify.notify(costs, [r], channels(), NOW).skipped == 1


@pytest.mark.parametrize(
    "channel",
    [
        "email:x\r\nBcc: victim@example.com",
        "email:x@example.com\nBcc: y@example.com",
        "email:not-an-address",
        "email:a@b",
        "slack:#ops\x00",
    ],
)
def test_a_channel_that_could_inject_a_header_or_is_no_address_is_refused(channel):
    with pytest.raises(rules.RuleError, match="channel"):
        budget(channel)


def test_one_bad_channel_does_not_stop_the_others_and_the_failure_shows(costs, smtp):  # noqa: F811
    inbox, port = smtp
    good = budget("email:finops@example.com")
    bad = rules.Rule(**{**good.__dict__, "rule_id": "notify-bad", "channel": "email:x\r\nBcc: victim@example.com"})  # slipped past a file
    evaluate.evaluate(costs, [good, bad], NOW)
    config = channels(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, email_from="polo@example.com")
    result = notify.notify(costs, [bad, good], config, NOW)
    assert (result.sent, result.failed) == (1, 1)
    assert "notify-bad" in result.errors[0] and "control character" in result.errors[0]
    assert len(inbox.messages) == 1 and inbox.messages[0].rcpt_tos == ["finops@example.com"]
    assert b"victim" not in inbox.messages[0].content

    from polo_pipelines.defs.rules.assets import delivery_check

    check = delivery_check(result, notify.overdue(costs, NOW))
    assert not check.passed and check.severity.value == "WARN"
    rules.sync(costs, [good, bad], NOW)
    late = notify.overdue(costs, NOW + dt.timedelta(days=2))
    assert list(late["rule_id"]) == ["notify-bad"]
    assert delivery_check(notify.Sent(), late).severity.value == "ERROR"
    assert delivery_check(notify.Sent(sent=1), notify.overdue(costs, NOW)).passed


def test_every_notification_carries_the_violation_id_as_its_idempotency_key(costs, httpserver, smtp):  # noqa: F811
    inbox, port = smtp
    slack, mail = budget("slack"), budget("email:finops@example.com")
    evaluate.evaluate(costs, [slack], NOW)
    httpserver.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("ok")
    notify.notify(costs, [slack], channels(slack_webhook=httpserver.url_for(WEBHOOK_PATH)), NOW)
    (request, _), *_ = [entry for entry in httpserver.log if entry[0].path == WEBHOOK_PATH]
    slack_id = str(evaluate.violations(costs)["violation_id"][0])
    assert request.headers["Idempotency-Key"] == slack_id

    evaluate.evaluate(costs, [mail], NOW)
    notify.notify(costs, [mail], channels(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False), NOW)
    mail_id = str(evaluate.violations(costs, rule_type=["budget"]).query("rule_id == 'notify-email'")["violation_id"].iloc[0])
    assert f"Idempotency-Key: {mail_id}" in inbox.messages[0].content.decode()
