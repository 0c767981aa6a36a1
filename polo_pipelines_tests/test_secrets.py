"""Credentials from the environment or AWS Secrets Manager (moto), never shown."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from polo_pipelines.sources.secrets import SecretError, get_secret, secret_values

VALUE = "dd-api-key-VERYSECRET"


@pytest.fixture
def secretsmanager(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="polo/datadog-api-key", SecretString=VALUE)
        yield client


def test_from_secrets_manager_when_enabled(secretsmanager, monkeypatch):
    monkeypatch.setenv("POLO_SECRETS_MANAGER", "1")
    assert VALUE not in secret_values()
    secret = get_secret("polo/datadog-api-key")
    assert secret.value == VALUE and secret.origin == "secretsmanager polo/datadog-api-key"
    assert VALUE not in repr(secret) and VALUE not in str(secret) and VALUE not in f"{secret}"
    assert VALUE in secret_values()  # fetched once, scrubbed from every error of the process after
    assert not get_secret("polo/datadog-app-key")  # absent: not configured, not an error


def test_environment_wins_and_secrets_manager_is_opt_in(secretsmanager, monkeypatch):
    assert not get_secret("polo/datadog-api-key")  # POLO_SECRETS_MANAGER unset: AWS is not asked
    monkeypatch.setenv("POLO_DATADOG_API_KEY", "from-env")
    monkeypatch.setenv("POLO_SECRETS_MANAGER", "1")
    secret = get_secret("polo/datadog-api-key")
    assert secret.value == "from-env" and secret.origin == "env POLO_DATADOG_API_KEY"


def test_secrets_manager_errors_name_the_secret_not_the_value(secretsmanager, monkeypatch):
    monkeypatch.setenv("POLO_SECRETS_MANAGER", "1")
    secretsmanager.delete_secret(SecretId="polo/datadog-api-key", ForceDeleteWithoutRecovery=False)
    with pytest.raises(SecretError, match="polo/datadog-api-key") as raised:
        get_secret("polo/datadog-api-key")
    assert VALUE not in str(raised.value)
