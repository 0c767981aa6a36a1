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
