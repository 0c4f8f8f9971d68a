"""MailchimpBatchOperator: send a given list of batch operations and summarise their outcome.

The generic member of the family (the audience, e-commerce and engagement operators subclass the
same lifecycle driver with their own planning and bookkeeping). Use it for one-off or
hand-built operations, e.g. from an upstream task's XCom::

    MailchimpBatchOperator(
        task_id="tag_vips",
        operations=[{"method": "POST", "path": "/lists/abc/members/<hash>/tags",
                     "operation_id": "vip-42", "body": {"tags": [{"name": "VIP", "status": "active"}]}}],
        max_error_ratio=0.05,
    )

Where the ledger lives: in the warehouse (``warehouse_conn_id``, table ``<prefix>batch``) by
default. With ``warehouse_conn_id=None`` the operator needs no warehouse at all: the ledger and the
per-batch summaries live only in Airflow's ``task_state_store`` (Airflow >= 3.3), which survives
retries and clears of the same task instance but is not visible outside Airflow.

How retries stay safe: the operations are sent in slices of ``max_operations_per_batch``, one
slice per round, and each batch's ledger entity names its slice (``ops:0-5000``). A retried task
re-attaches to the slices already sent, and only slices that were never sent, or whose batch was
abandoned (results expired), are sent again.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from airflow.sdk.exceptions import AirflowException

from mailchimp_provider.operators.base import MailchimpBatchLifecycleOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.batches.results import OperationResult

__all__ = ["MailchimpBatchOperator"]

ABANDONED = "abandoned"  # mailchimp_provider.batches.ledger.ABANDONED (not imported: keeps DAG parsing light)
NOT_SENT = "not_sent"  # mailchimp_provider.batches.ledger.NOT_SENT
SUMMARY_KEY = "mailchimp_batch_summaries"
FIRST_ERRORS = 10
SLICE_PREFIX = "ops:"


class MailchimpBatchOperator(MailchimpBatchLifecycleOperator):
    """Submit ``operations`` as Mailchimp batches, wait, and return a summary of the results.

    :param operations: a list of ``{"method", "path", "operation_id"?, "body"?, "params"?}`` dicts,
        a JSON string of that list, or an XComArg producing either (templated). ``body`` may be a
        dict; it is sent as the JSON string Mailchimp wants. Operations without an
        ``operation_id`` get ``op-<index>``.
    :param max_error_ratio: fail when the share of errored operations exceeds this (0 = any error
        fails the task; 1 = never fail on operation errors).
    :param max_resubmits: how often a slice whose batch was abandoned (results expired, or stalled
        and given up) is sent again before the task fails instead.

    Returns (XCom) ``{"operations", "succeeded", "errored", "by_status_code", "first_errors",
    "batch_ids", "abandoned_batch_ids"}``. Other parameters: see ``MailchimpBatchLifecycleOperator``.
    """

    template_fields: Sequence[str] = ("operations",)
    template_fields_renderers = {"operations": "json"}

    def __init__(
        self, *, operations: Any, max_error_ratio: float = 0.0, max_resubmits: int = 2, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(max_error_ratio) <= 1.0:
            raise ValueError(f"{self.task_id}: max_error_ratio must be within [0, 1], got {max_error_ratio}")
        self.operations = operations
        self.max_error_ratio = float(max_error_ratio)
        self.max_resubmits = int(max_resubmits)
        self._memory_summaries: dict[str, dict[str, Any]] = {}

    # -- input ---------------------------------------------------------------------------------------
    def _operation_list(self) -> list[dict[str, Any]]:
        """The rendered ``operations`` as a list, with an ``operation_id`` on every operation."""
        raw = self.operations
        if isinstance(raw, (bytes, str)):
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise AirflowException(f"{self.task_id}: 'operations' is a string but not JSON ({exc})") from None
        if isinstance(raw, tuple):
            raw = list(raw)
        if not isinstance(raw, list):
            raise AirflowException(
                f"{self.task_id}: 'operations' must be a list of operation dicts (or a JSON string of one), "
                f"got {type(raw).__name__}"
            )
        out = []
        for index, op in enumerate(raw):
            if not isinstance(op, dict):
                raise AirflowException(f"{self.task_id}: operation #{index} must be a dict, got {type(op).__name__}")
            out.append(op if op.get("operation_id") is not None else {**op, "operation_id": f"op-{index}"})
        return out

    @staticmethod
    def _slice_of(entity: str | None) -> tuple[int, int] | None:
        if not entity or not entity.startswith(SLICE_PREFIX):
            return None
        start, _, end = entity[len(SLICE_PREFIX):].partition("-")
        return (int(start), int(end)) if start.isdigit() and end.isdigit() else None

    # -- lifecycle -------------------------------------------------------------------------------------
    def execute(self, context: "Context") -> Any:
        ops = self._operation_list()
        # One slice per round: make sure the round guard can never cut a legitimate run short.
        slices = math.ceil(len(ops) / self.max_operations_per_batch) if ops else 0
        self.max_rounds = max(self.max_rounds, 2 * slices + 1)
        return super().execute(context)

    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        ops = self._operation_list()
        covered = set()
        abandoned: dict[tuple[int, int], list[str]] = {}
        from mailchimp_provider.batches.ledger import BatchScope

        for entry in self.ledger_for(context).entries(BatchScope.from_context(context)):
            bounds = self._slice_of(entry.entity)
            if bounds is None:
                continue
            if entry.status == ABANDONED:
                abandoned.setdefault(bounds, []).append(f"{entry.batch_id}: {entry.error}")
            elif entry.status != NOT_SENT:  # an intent Mailchimp never turned into a batch covers nothing
                covered.add(bounds)
        size = self.max_operations_per_batch
        for start in range(0, len(ops), size):
            bounds = (start, min(start + size, len(ops)))
            if bounds not in covered:
                failures = abandoned.get(bounds, [])
                if len(failures) > self.max_resubmits:
                    raise AirflowException(
                        f"{self.task_id}: operations {bounds[0]}..{bounds[1] - 1} were sent {len(failures)} times and "
                        f"every batch was abandoned (max_resubmits={self.max_resubmits}); last: {failures[-1]}"
                    )
                return f"{SLICE_PREFIX}{bounds[0]}-{bounds[1]}", ops[bounds[0]:bounds[1]]
        return None

    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        by_status: dict[str, int] = {}
        errors: list[dict[str, Any]] = []
        total = errored = 0
        for result in results:
            total += 1
            key = str(result.status_code)
            by_status[key] = by_status.get(key, 0) + 1
            if not result.ok:
                errored += 1
                if len(errors) < FIRST_ERRORS:
                    errors.append({
                        "operation_id": result.operation_id,
                        "status_code": result.status_code,
                        "title": result.title,
                        "detail": result.detail,
                        "field_errors": result.field_errors,
                    })
        summary = {"entity": entity, "operations": total, "errored": errored, "by_status_code": by_status,
                   "first_errors": errors}
        self._save_summary(context, batch_id, summary)
        if errored:
            self.log.warning("Batch %s: %d of %d operation(s) failed; first: %s", batch_id, errored, total,
                             "; ".join(f"{e['operation_id']}: {e['status_code']} {e['title']}: {e['detail']}"
                                       for e in errors[:3]))

    def finish(self, context: "Context") -> dict[str, Any]:
        from mailchimp_provider.batches.ledger import BatchScope

        scope = BatchScope.from_context(context)
        entries = self.ledger_for(context).entries(scope)
        summaries = self._load_summaries(context)
        by_status: dict[str, int] = {}
        first_errors: list[dict[str, Any]] = []
        total = errored = 0
        for entry in entries:
            summary = summaries.get(entry.batch_id)
            if entry.applied_at is None or summary is None:
                continue
            total += summary["operations"]
            errored += summary["errored"]
            for code, n in summary["by_status_code"].items():
                by_status[code] = by_status.get(code, 0) + n
            first_errors.extend(summary["first_errors"][: max(0, FIRST_ERRORS - len(first_errors))])
        result = {
            "operations": total,
            "succeeded": total - errored,
            "errored": errored,
            "by_status_code": dict(sorted(by_status.items())),
            "first_errors": first_errors,
            "batch_ids": [e.batch_id for e in entries if e.applied_at is not None],
            "abandoned_batch_ids": [e.batch_id for e in entries if e.status == ABANDONED],
        }
        ratio = errored / total if total else 0.0
        if ratio > self.max_error_ratio:
            shown = "; ".join(_describe_error(e) for e in first_errors)
            raise AirflowException(
                f"{self.task_id}: {errored} of {total} operation(s) failed ({ratio:.1%} > max_error_ratio="
                f"{self.max_error_ratio:.1%}). First errors: {shown}. The batches are applied and will not be "
                "resent on retry; fix the data and send the failed operations again."
            )
        self.log.info("Summary: %s", {k: v for k, v in result.items() if k != "first_errors"})
        return result

    # -- per-batch summaries (task_state_store, so they survive deferral and retries) ----------------------
    def _save_summary(self, context: "Context", batch_id: str, summary: dict[str, Any]) -> None:
        store = context.get("task_state_store")
        if store is None:
            self._memory_summaries[batch_id] = summary
            return
        from airflow.sdk.execution_time.context import NEVER_EXPIRE

        summaries = store.get(SUMMARY_KEY, default={}) or {}
        summaries[batch_id] = summary
        store.set(SUMMARY_KEY, summaries, retention=NEVER_EXPIRE)

    def _load_summaries(self, context: "Context") -> dict[str, dict[str, Any]]:
        store = context.get("task_state_store")
        if store is None:
            return dict(self._memory_summaries)
        return {**(store.get(SUMMARY_KEY, default={}) or {}), **self._memory_summaries}


def _describe_error(error: dict[str, Any]) -> str:
    """``op-7: 400 Invalid Resource: <detail> [email_address: <message>]`` for failure messages."""
    text = f"{error['operation_id']}: {error['status_code']} {error['title']}: {error['detail']}"
    fields = ", ".join(f"{f['field']}: {f['message']}" for f in error["field_errors"])
    return f"{text} [{fields}]" if fields else text
