"""Credentials: from an environment variable, else from AWS Secrets Manager (POLO_SECRETS_MANAGER=1).

A secret is read when a collector needs it, never at definition load, and is only ever handed
to the API client's headers; ``Secret`` hides its value from repr, str and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from polo_pipelines.settings import env_flag

# The notification channels' secrets; each source's come from its spec (see secret_env).
NOTIFICATION_SECRETS = {
    "polo/slack-webhook": "POLO_SLACK_WEBHOOK_URL",
    "polo/smtp-password": "POLO_SMTP_PASSWORD",
}
# A rule action's webhook ``webhook:<name>``: POLO_ACTION_WEBHOOK_<NAME>, or the secret polo/action-webhook-<name>.
ACTION_WEBHOOK_ENV = "POLO_ACTION_WEBHOOK_"
# The AWS credential chain's secrets: boto3 reads them itself, and a session token travels in every request's headers.
AWS_CREDENTIAL_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# Every secret value this process was handed from Secrets Manager, so text can be scrubbed of it after the fact.
_FETCHED: set[str] = set()


def secret_env() -> dict[str, str]:
    """Every secret's name in Secrets Manager -> the environment variable that overrides it."""
    from polo_pipelines.sources import SOURCES

    out = dict(NOTIFICATION_SECRETS)
    for spec in SOURCES:
        out.update(spec.secrets)
    return out


def secret_values() -> list[str]:
    """Every secret value this process holds: Polo's credentials and the AWS chain's from the environment, and those
    fetched from Secrets Manager. Text that leaves a step or a command (an error, a log line) is scrubbed of them."""
    names = [*secret_env().values(), *AWS_CREDENTIAL_ENV, *(n for n in os.environ if n.startswith(ACTION_WEBHOOK_ENV))]
    return sorted({os.environ[name] for name in names if os.environ.get(name)} | _FETCHED)


@dataclass(frozen=True)
class Secret:
    name: str
    value: str = ""
    origin: str = ""  # "env POLO_GITHUB_TOKEN" or "secretsmanager polo/github-pat"; never the value

    def __repr__(self) -> str:
        return f"Secret({self.name}, from {self.origin or 'nowhere'})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


class SecretError(RuntimeError):
    pass


def action_webhook_secret(action: str) -> tuple[str, str]:
    """(secret name, environment variable) of a rule action ``webhook:<name>``."""
    name = action.split(":", 1)[1]
    return f"polo/action-webhook-{name}", ACTION_WEBHOOK_ENV + name.upper().replace("-", "_")


def get_secret(name: str, *, secrets_client=None, env: str | None = None) -> Secret:
    """The secret ``name`` (e.g. ``polo/github-pat``): its environment variable (``env``, else the one the secret is
    known by) first, then Secrets Manager."""
    env = env or secret_env()[name]
    value = os.environ.get(env, "")
    if value:
        return Secret(name, value, f"env {env}")
    if secrets_client is None and not env_flag("POLO_SECRETS_MANAGER"):
        return Secret(name)
    client = secrets_client or _secrets_client()
    try:
        answer = client.get_secret_value(SecretId=name)
    except client.exceptions.ResourceNotFoundException:
        return Secret(name)
    except Exception as exc:  # botocore errors carry no secret; keep only their code
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise SecretError(f"AWS Secrets Manager could not give {name}: {code}") from None
    value = str(answer.get("SecretString") or "")
    if value:
        _FETCHED.add(value)
    return Secret(name, value, f"secretsmanager {name}")


def _secrets_client():
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("secretsmanager", region_name=region)
