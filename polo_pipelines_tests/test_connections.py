"""`polo check-connections` against the local sample APIs: working, refused and unconfigured platforms."""

from __future__ import annotations

import datetime as dt
import json

from polo_pipelines.cli import main as cli
from polo_pipelines.sources import SOURCES
from polo_pipelines.sources.azure import sample as az
from polo_pipelines.sources.cloudflare.sample import ACCOUNT
from polo_pipelines.sources.datadog.sample import DATADOG_API_KEY, DATADOG_APP_KEY
from polo_pipelines.sources.gcp import sample as sg
from polo_pipelines.sources.sample.platforms import PlatformSample
from polo_pipelines.sources.sample.server import SAMPLE_TOKEN

WRONG = "ghp_WRONGTOKEN_must_not_print"


def test_each_configured_platform_is_checked_and_nothing_secret_is_printed(polo_home, monkeypatch, capsys):
    end = dt.datetime.now(dt.UTC).date()
    url = PlatformSample(end - dt.timedelta(days=56), end).serve().url
    settings = {
        "POLO_GITHUB_ORG": "examplecorp",
        "POLO_GITHUB_API_URL": f"{url}/github",
        "POLO_GITHUB_TOKEN": WRONG,
        "POLO_CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "POLO_CLOUDFLARE_API_URL": f"{url}/cloudflare",
        "POLO_CLOUDFLARE_TOKEN": SAMPLE_TOKEN,
        "POLO_DATADOG_SITE": "datadoghq.eu",
        "POLO_DATADOG_API_URL": f"{url}/datadog",
        "POLO_DATADOG_API_KEY": DATADOG_API_KEY,
        "POLO_DATADOG_APP_KEY": DATADOG_APP_KEY,
        "POLO_AZURE_SCOPES": f"subscriptions/{az.SUBSCRIPTION}",
        "POLO_AZURE_TENANT_ID": az.TENANT,
        "POLO_AZURE_CLIENT_ID": az.CLIENT_ID,
        "POLO_AZURE_CLIENT_SECRET": az.CLIENT_SECRET,
        "POLO_AZURE_MANAGEMENT_URL": f"{url}/azure/management",
        "POLO_AZURE_AUTHORITY_URL": f"{url}/azure/login",
        "POLO_GCP_BILLING_TABLE": sg.TABLE,
        "POLO_GCP_BIGQUERY_URL": f"{url}/gcp",
        "POLO_GCP_CREDENTIALS": '{"type": "service_account"}',
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-connections", "--json", "--platforms", "github,cloudflare,datadog,azure,focus"]) == 1
    out = capsys.readouterr()
    results = {r["platform"]: r for r in json.loads(out.out)}
    assert results["github"]["status"] == "failed" and "401" in results["github"]["detail"]
    assert results["cloudflare"]["status"] == "ok" and "active" in results["cloudflare"]["detail"]
    assert results["datadog"]["status"] == "ok" and "5 products" in results["datadog"]["detail"]
    assert results["azure"]["status"] == "ok"
    assert results["focus"]["status"] == "skipped" and "POLO_FOCUS_URI" in results["focus"]["detail"]
    assert results.keys() == {"github", "cloudflare", "datadog", "azure", "focus"}
    for secret in (WRONG, SAMPLE_TOKEN, DATADOG_API_KEY, DATADOG_APP_KEY, az.CLIENT_SECRET):
        assert secret not in out.out and secret not in out.err

    # a broken service-account key is a clear failure that does not echo the key
    assert cli.main(["check-connections", "--platforms", "gcp"]) == 1
    text = capsys.readouterr().out
    assert "failed" in text and "service-account key" in text and "service_account" not in text


def test_nothing_configured_is_all_skipped_and_succeeds(polo_home, capsys):
    assert cli.main(["check-connections"]) == 0
    text = capsys.readouterr().out
    assert text.count("skipped") == len(SOURCES) and "failed" not in text


def test_an_export_source_says_which_days_it_holds(polo_home, monkeypatch, capsys):
    from polo_pipelines.sources.aws.sample import write_cur2
    from polo_pipelines.sources.sample.world import SampleWorld

    end = dt.datetime.now(dt.UTC).date()
    world = SampleWorld(end=end)
    write_cur2([i for i in world.line_items() if i.day >= end - dt.timedelta(days=40)], polo_home / "export")
    monkeypatch.setenv("POLO_AWS_CUR_URI", str(polo_home / "export"))
    monkeypatch.setenv("POLO_AWS_CUR_EXPORT_NAME", "polo-sample")
    assert cli.main(["check-connections", "--json", "--platforms", "aws"]) == 0
    (aws,) = json.loads(capsys.readouterr().out)
    first = (end - dt.timedelta(days=40)).replace(day=1)
    assert aws["status"] == "ok" and aws["holds"] == f"{first}..{end - dt.timedelta(days=1)}"
    monkeypatch.setenv("POLO_AWS_CUR_EXPORT_NAME", "no-such-export")
    assert cli.main(["check-connections", "--json", "--platforms", "aws"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["holds"] == ""
