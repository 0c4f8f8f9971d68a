"""MailchimpBatchLink: the "Mailchimp batch" button on a task, pointing at ``GET /batches/{id}``.

Mailchimp has no web page for API batches, so the link is the API resource itself; opened in a
browser logged in with the API key (or from curl), it shows the batch's status and counters. The
URL carries no credentials. The batch ids come from the task's XCom ``mailchimp_batch_ids`` (pushed
by the batch operators and the sensor); the link shows the most recent batch.

In Airflow 3 the worker computes the link when the task finishes and stores it in XCom, so
``get_link`` runs with the real operator (which knows its ``mailchimp_conn_id``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["MailchimpBatchLink", "XCOM_BATCH_IDS", "batch_url"]

log = logging.getLogger(__name__)

XCOM_BATCH_IDS = "mailchimp_batch_ids"


def batch_url(base_url: str, batch_id: str) -> str:
    """``<API base>/batches/<id>`` (the base has no credentials: they go in headers)."""
    return f"{base_url.rstrip('/')}/batches/{batch_id}"


class MailchimpBatchLink(BaseOperatorLink):
    """Link to the latest Mailchimp batch a task submitted or waited for."""

    name = "Mailchimp batch"

    def get_link(self, operator: "BaseOperator", *, ti_key: "TaskInstanceKey") -> str:
        from airflow.sdk.execution_time.xcom import XCom

        batch_ids: Any = XCom.get_value(ti_key=ti_key, key=XCOM_BATCH_IDS)
        if isinstance(batch_ids, str):
            batch_ids = [batch_ids]
        if not batch_ids:
            return ""
        conn_id = getattr(operator, "mailchimp_conn_id", None) or "mailchimp_default"
        try:
            from mailchimp_provider.hooks.mailchimp import MailchimpHook

            base_url = MailchimpHook(mailchimp_conn_id=conn_id).base_url
        except Exception as exc:  # noqa: BLE001 - a broken connection must not break the task's end
            log.warning("No Mailchimp batch link: connection %r could not be read (%s)", conn_id, exc)
            return ""
        return batch_url(base_url, str(batch_ids[-1]))
