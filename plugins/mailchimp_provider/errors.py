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


class MailchimpSafetyInputError(MailchimpConfigError):
    """A safety input (erasure requests, consent flags, pulled-back member statuses) could not be
    read; raised before any write. Fatal: the sync operators fail the task without retry (a missing
    column or permission does not fix itself), and syncing without the input could contact someone
    who asked not to be. Lost connections are not this error: they stay retriable."""


class MailchimpRetriableError(MailchimpError):
    """A transient failure (429, 5xx, timeout, connection error) that outlived the retry budget."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class MailchimpUnconfirmedWriteError(MailchimpRetriableError):
    """A write whose answer was lost (5xx or no answer in time): Mailchimp may or may not have done it.

    Raised instead of a blind retry by calls that must not be replayed (``POST /batches``), so the
    caller can look for the effect first. ``answered`` tells a 5xx answer (the server was done with
    the request) from a timeout or dropped connection (it may still be working on it).
    """

    def __init__(self, message: str, *, status: int | None = None, answered: bool = False) -> None:
        super().__init__(message, status=status, attempts=1)
        self.answered = answered


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
