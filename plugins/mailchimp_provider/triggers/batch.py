"""MailchimpBatchTrigger: wait for Mailchimp batches in the triggerer, without holding a worker slot.

Modelled on the dbt Cloud provider's run trigger: it only *observes*. It polls
``GET /batches/{id}`` through the async client (same credentials, ``RetryPolicy`` and typed errors
as the hook), feeds ``BatchProgress`` (the same stall/expiry rules as the synchronous wait), and
yields exactly one ``TriggerEvent`` whose payload is plain JSON::

    {"status": "finished" | "stalled" | "expired" | "error",
     "batches": {batch_id: snapshot, ...},
     "message": "what happened and what to do"}

It writes nothing anywhere: the resumed task re-reads its ledger and does the bookkeeping, so a
trigger that is restarted, duplicated on another triggerer or cancelled cannot corrupt anything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mailchimp_provider.batches.progress import BatchProgress, Outcome
from mailchimp_provider.errors import MailchimpBatchExpiredError, MailchimpNotFoundError

__all__ = ["MailchimpBatchTrigger"]


class MailchimpBatchTrigger(BaseTrigger):
    """Poll batches until all finished, one expired, they stalled, or ``max_wait`` passed.

    :param batch_ids: the batches to wait for together.
    :param mailchimp_conn_id: Airflow connection of type ``mailchimp``.
    :param poll_interval: first delay between polls, in seconds; grows gently (x1.25, capped).
    :param stall_timeout: fail when no batch has moved for this many seconds.
    :param max_wait: optional bound on the whole wait, in seconds.
    :param wait_started_at: epoch seconds when the caller started waiting, so ``max_wait`` holds
        across re-deferrals and triggerer restarts; defaults to now.
    """

    def __init__(
        self,
        batch_ids: list[str],
        mailchimp_conn_id: str = "mailchimp_default",
        poll_interval: float = 10.0,
        stall_timeout: float = 1800.0,
        max_wait: float | None = None,
        wait_started_at: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(batch_ids, str):
            batch_ids = [batch_ids]
        self.batch_ids = [str(b) for b in batch_ids]
        if not self.batch_ids:
            raise ValueError("MailchimpBatchTrigger needs at least one batch id")
        self.mailchimp_conn_id = mailchimp_conn_id
        self.poll_interval = float(poll_interval)
        self.stall_timeout = float(stall_timeout)
        self.max_wait = None if max_wait is None else float(max_wait)
        self.wait_started_at = float(wait_started_at) if wait_started_at is not None else time.time()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_ids": list(self.batch_ids),
                "mailchimp_conn_id": self.mailchimp_conn_id,
                "poll_interval": self.poll_interval,
                "stall_timeout": self.stall_timeout,
                "max_wait": self.max_wait,
                "wait_started_at": self.wait_started_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        progress: BatchProgress | None = None
        try:
            progress = BatchProgress(
                self.batch_ids,
                stall_timeout=self.stall_timeout,
                max_wait=self.max_wait,
                poll_interval=self.poll_interval,
                waited_before=max(0.0, time.time() - self.wait_started_at),
            )
            async with await self._client() as client:
                while True:
                    for batch_id in progress.pending():
                        try:
                            progress.observe(batch_id, await client.get(f"/batches/{batch_id}"))
                        except (MailchimpNotFoundError, MailchimpBatchExpiredError):
                            progress.observe_expired(batch_id)
                    verdict = progress.verdict()
                    if verdict.done:
                        yield TriggerEvent(_payload(verdict.outcome.value, progress, verdict.message))
                        return
                    delay = progress.next_interval()
                    self.log.info("%s Next check in %.1fs.", verdict.message, delay)
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with the message
            message = (
                f"Polling batches {', '.join(self.batch_ids)} failed: {type(exc).__name__}: {exc}. "
                "What to do: the batches stay in the ledger; retry or clear the task to re-attach to them."
            )
            yield TriggerEvent(_payload(Outcome.TIMED_OUT.value, progress, message))

    async def _client(self) -> Any:
        from mailchimp_provider.hooks.async_client import MailchimpAsyncClient

        return await MailchimpAsyncClient.from_conn_id(self.mailchimp_conn_id)


def _payload(status: str, progress: BatchProgress | None, message: str) -> dict[str, Any]:
    """The JSON-only event payload; expired batches appear with ``"expired": true``."""
    batches: dict[str, Any] = {}
    if progress is not None:
        verdict = progress.verdict()
        batches = {b: dict(s) for b, s in verdict.snapshots.items()}
        for batch_id in verdict.expired:
            batches[batch_id] = {**batches.get(batch_id, {"id": batch_id}), "expired": True}
    return {"status": status, "batches": batches, "message": message}
