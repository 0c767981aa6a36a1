"""One AWS API call whose failure, after the client's own retries (throttling and 5xx, with backoff and a bound),
stops the partition naming the source, the call and the partition: the error code and how many attempts were made."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from polo_pipelines.sources.http import SourceUnavailable

T = TypeVar("T")


def aws_call(call: Callable[..., T], what: str, *, source: str, partition: str, **request: object) -> T:
    """``call(**request)``, or a SourceUnavailable saying what kept failing: "cloudtrail LookupEvents eu-west-1 page 1:
    ThrottlingException after 8 attempt(s)". The request itself is never quoted (it may carry a token)."""
    try:
        return call(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        tries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
        raise SourceUnavailable(
            f"{what}: {error.get('Code', 'error')} after {tries} attempt(s)", source=source, partition=partition
        ) from None
    except BotoCoreError as exc:
        raise SourceUnavailable(f"{what}: {type(exc).__name__}", source=source, partition=partition) from None
