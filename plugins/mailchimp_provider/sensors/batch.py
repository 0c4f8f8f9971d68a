"""MailchimpBatchSensor: wait for a batch (submitted by anyone) to finish.

For batches this project did not submit itself (another tool, a previous DAG), or to gate
downstream tasks on one. Stall and expiry use the same ``BatchProgress`` rules as the operators,
so a batch stuck in ``finalizing`` fails the sensor after ``stall_timeout`` with a message that
says what to do, instead of poking until the sensor's own timeout.

Modes: ``poke`` keeps the progress tracker in memory; ``reschedule`` keeps it in Airflow's
task_state_store (Airflow >= 3.3) between pokes; ``deferrable=True`` hands the wait to
``MailchimpBatchTrigger``. The finished batch snapshot is the sensor's XCom.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from mailchimp_provider.batches.progress import BatchProgress, Outcome, describe_batch, split_hint
from mailchimp_provider.errors import MailchimpBatchError, MailchimpBatchExpiredError, MailchimpBatchStalledError
from mailchimp_provider.links import XCOM_BATCH_IDS, MailchimpBatchLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.hooks.mailchimp import MailchimpHook

__all__ = ["MailchimpBatchSensor"]

PROGRESS_KEY = "mailchimp_batch_sensor_progress"


class MailchimpBatchSensor(BaseSensorOperator):
    """Succeed when batch ``batch_id`` is finished; fail clearly when it stalls or expires.

    :param batch_id: the Mailchimp batch id (templated, e.g. from an XCom).
    :param mailchimp_conn_id: Airflow connection of type ``mailchimp``.
    :param stall_timeout: fail when ``finished_operations`` and ``status`` have not moved for
        this many seconds (a batch stuck in ``finalizing`` included).
    :param deferrable: wait in the triggerer instead of poking.
    :param poke_interval: seconds between pokes (also the trigger's first poll interval).
    """

    template_fields: Sequence[str] = ("batch_id",)
    operator_extra_links = (MailchimpBatchLink(),)
    ui_color = "#ffe01b"

    def __init__(
        self,
        *,
        batch_id: str,
        mailchimp_conn_id: str = "mailchimp_default",
        stall_timeout: float = 1800.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 10.0)
        super().__init__(**kwargs)
        if stall_timeout <= 0:
            raise ValueError(f"{self.task_id}: stall_timeout must be > 0 seconds, got {stall_timeout}")
        self.batch_id = batch_id
        self.mailchimp_conn_id = mailchimp_conn_id
        self.stall_timeout = float(stall_timeout)
        self.deferrable = deferrable
        self._progress: BatchProgress | None = None

    @property
    def hook(self) -> "MailchimpHook":
        from mailchimp_provider.hooks.mailchimp import MailchimpHook

        return MailchimpHook(mailchimp_conn_id=self.mailchimp_conn_id)

    def execute(self, context: "Context") -> Any:
        context["ti"].xcom_push(key=XCOM_BATCH_IDS, value=[str(self.batch_id)])
        if not self.deferrable:
            return super().execute(context)
        # One synchronous look first: a batch that is already finished needs no triggerer round trip.
        done = self.poke(context)
        if done.is_done:
            return done.xcom_value
        from mailchimp_provider.triggers.batch import MailchimpBatchTrigger

        self.defer(
            trigger=MailchimpBatchTrigger(
                batch_ids=[str(self.batch_id)],
                mailchimp_conn_id=self.mailchimp_conn_id,
                poll_interval=float(self.poke_interval),
                stall_timeout=self.stall_timeout,
                max_wait=float(self.timeout) if self.timeout else None,
                wait_started_at=time.time(),
            ),
            method_name="execute_complete",
        )

    def poke(self, context: "Context") -> PokeReturnValue:
        batch_id = str(self.batch_id)
        progress = self._tracker(context)
        try:
            progress.observe(batch_id, self.hook.get_batch(batch_id))
        except MailchimpBatchExpiredError:
            progress.observe_expired(batch_id)
        self._save_tracker(context, progress)
        verdict = progress.verdict()
        if verdict.outcome is Outcome.FINISHED:
            self.log.info(verdict.message)
            return PokeReturnValue(is_done=True, xcom_value=verdict.snapshots.get(batch_id))
        if verdict.outcome is Outcome.EXPIRED:
            raise MailchimpBatchExpiredError(batch_id, *split_hint(verdict.message))
        if verdict.outcome is Outcome.STALLED:
            raise MailchimpBatchStalledError(batch_id, *split_hint(verdict.message))
        self.log.info("Batch %s: %s.", batch_id, describe_batch(verdict.snapshots.get(batch_id, {})))
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: "Context", event: dict[str, Any] | None = None) -> Any:
        event = event or {}
        status = event.get("status")
        message = str(event.get("message") or "no message")
        batch_id = str(self.batch_id)
        if status == "finished":
            self.log.info(message)
            return (event.get("batches") or {}).get(batch_id)
        if status == "stalled":
            raise MailchimpBatchStalledError(batch_id, *split_hint(message))
        if status == "expired":
            raise MailchimpBatchExpiredError(batch_id, *split_hint(message))
        raise MailchimpBatchError(batch_id, *split_hint(message))

    # -- stall tracking across pokes ---------------------------------------------------------------
    def _tracker(self, context: "Context") -> BatchProgress:
        """In poke mode the tracker lives on the operator; in reschedule mode it is rebuilt from the
        task_state_store (wall-clock based, since each poke is a new process)."""
        if self.mode != "reschedule":
            if self._progress is None:
                self._progress = BatchProgress([str(self.batch_id)], stall_timeout=self.stall_timeout,
                                               poll_interval=float(self.poke_interval))
            return self._progress
        progress = BatchProgress([str(self.batch_id)], stall_timeout=self.stall_timeout,
                                 poll_interval=float(self.poke_interval), clock=time.time)
        store = context.get("task_state_store")
        saved = store.get(PROGRESS_KEY) if store is not None else None
        if isinstance(saved, dict) and saved.get("batch_id") == str(self.batch_id):
            progress.restore(saved)
        return progress

    def _save_tracker(self, context: "Context", progress: BatchProgress) -> None:
        store = context.get("task_state_store")
        if self.mode == "reschedule" and store is not None:
            store.set(PROGRESS_KEY, {"batch_id": str(self.batch_id), **progress.checkpoint()})
