"""Exception types. Retriable vs fatal is a type, not a flag, so callers can ``except`` on it.

``MailchimpRetriableError`` covers what the hook retries itself (429, 5xx, timeouts, connection
errors) and raises only after its attempts are exhausted; ``MailchimpApiError`` covers 4xx answers
that retrying cannot fix. Messages never contain credentials.
"""

from __future__ import annotations

from typing import Any


class MailchimpError(Exception):
    """Base class of everything this provider raises about Mailchimp."""


class MailchimpConfigError(MailchimpError):
    """Bad connection or sync configuration, found before any request was made."""


class MailchimpRetriableError(MailchimpError):
    """A transient failure (429, 5xx, timeout, connection error) that outlived the retry budget."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class MailchimpApiError(MailchimpError):
    """A non-retriable error answer (4xx other than 429), with Mailchimp's problem-detail fields."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        method: str = "",
        path: str = "",
        instance: str = "",
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.method = method
        self.path = path
        self.instance = instance
        fields = "; ".join(f"{e.get('field') or '-'}: {e.get('message')}" for e in self.errors)
        super().__init__(
            f"{method} {path} -> {status} {title}: {detail}" + (f" [{fields}]" if fields else "")
        )


class MailchimpAuthError(MailchimpApiError):
    """401/403: the API key is wrong, revoked, or for another data center."""


class MailchimpNotFoundError(MailchimpApiError):
    """404: the resource does not exist (or a batch's results have expired)."""


class MailchimpBatchError(MailchimpError):
    """A batch could not be waited for to completion; ``hint`` tells the operator what to do."""

    def __init__(self, batch_id: str, message: str, hint: str) -> None:
        super().__init__(f"Batch {batch_id}: {message} What to do: {hint}")
        self.batch_id = batch_id
        self.hint = hint


class MailchimpBatchStalledError(MailchimpBatchError):
    """The batch's finished-operation count stopped moving for longer than the stall timeout."""


class MailchimpBatchExpiredError(MailchimpBatchError):
    """Mailchimp no longer knows the batch (404) or its results archive is gone."""
