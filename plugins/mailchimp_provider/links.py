"""MailchimpBatchLink: the "Mailchimp batch" button on a task, opening a page a person can read.

Mailchimp has no web page for API batches: ``GET /3.0/batches/{id}`` answers only with the API key
in a header, so a browser gets a 401 in JSON. A task that keeps its batch ledger in the warehouse
(``warehouse_conn_id``: the sync, engagement and batch operators by default) links to the sync
dashboard's batch view instead, ``<Airflow UI>/mailchimp/#batch/<id>``: status and counters from
the ledger, the records the batch carried by outcome and reason, the failed and skipped ones with
their errors, and links to the run and the task log, behind Airflow's login and the DAG's read
permission. A task without a warehouse ledger (the sensor, ``warehouse_conn_id=None``) links to
the API resource, for curl with the key. The URL never carries credentials. The batch ids come from
the task's XCom ``mailchimp_batch_ids`` (pushed by the batch operators and the sensor); the link
shows the most recent batch.

In Airflow 3 the worker computes the link when the task finishes and stores it in XCom, so
``get_link`` runs with the real operator (which knows its ``mailchimp_conn_id``) and the worker's
``[api] base_url`` (a path alone when it is unset: the UI's own origin).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["MailchimpBatchLink", "XCOM_BATCH_IDS", "batch_url", "dashboard_batch_url"]

log = logging.getLogger(__name__)

XCOM_BATCH_IDS = "mailchimp_batch_ids"


def batch_url(base_url: str, batch_id: str) -> str:
    """``<API base>/batches/<id>`` (the base has no credentials: they go in headers)."""
    return f"{base_url.rstrip('/')}/batches/{batch_id}"


def dashboard_batch_url(ui_base_url: str, batch_id: str) -> str:
    """The sync dashboard's view of a batch (``ui_base_url``: Airflow's ``[api] base_url``)."""
    from urllib.parse import quote

    return f"{ui_base_url.rstrip('/')}/mailchimp/#batch/{quote(batch_id, safe='')}"


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
        if getattr(operator, "warehouse_conn_id", None):
            from airflow.configuration import conf

            return dashboard_batch_url(conf.get("api", "base_url", fallback="") or "", str(batch_ids[-1]))
        conn_id = getattr(operator, "mailchimp_conn_id", None) or "mailchimp_default"
        try:
            from mailchimp_provider.hooks.mailchimp import MailchimpHook

            base_url = MailchimpHook(mailchimp_conn_id=conn_id).base_url
        except Exception as exc:  # noqa: BLE001 - a broken connection must not break the task's end
            log.warning("No Mailchimp batch link: connection %r could not be read (%s)", conn_id, exc)
            return ""
        return batch_url(base_url, str(batch_ids[-1]))
