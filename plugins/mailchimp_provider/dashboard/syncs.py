"""The syncs the dashboard shows: one card per forward entity and one for the engagement pull.

Read from the same config files the DAGs read (``include/*.yaml`` or the ``$MAILCHIMP_*_CONFIG``
overrides), so the dashboard looks at the tables, prefix and connection the DAGs write to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from mailchimp_provider.dashboard.queries import EmailSource
from mailchimp_provider.warehouse.tables import WarehouseTables

log = logging.getLogger(__name__)

AUDIENCE_DAG_ID = "mailchimp_audience_sync"
ECOMMERCE_DAG_ID = "mailchimp_ecommerce_sync"
ENGAGEMENT_DAG_ID = "mailchimp_engagement_pull"

Kind = Literal["audience", "ecommerce", "engagement"]

FORWARD_ACTIONS = ("sync_now", "sync_all", "dry_run", "retry_failed")
ACTION_CONF: dict[str, dict[str, object]] = {
    "sync_now": {},
    "sync_all": {"full_refresh": True},
    "dry_run": {"dry_run": True},
    "retry_failed": {"retry_failed": True},
    "create_audience": {"ensure_only": True},
    "refresh": {},
}
"""What each button puts in the DAG run's conf (the DAGs' params of the same names)."""
CUSTOMER_EMAILS = EmailSource("customers", "customer_id", "email")
"""The e-commerce customers' source (``sync/ecommerce/customers.py`` reads the contract's columns)."""


@dataclass(frozen=True)
class Sync:
    """One card: which DAG runs it and which ``sync_state.entity`` it writes (None: the pull)."""

    key: str
    title: str
    kind: Kind
    dag_id: str
    entity: str | None = None
    task_id: str | None = None
    email_source: EmailSource | None = None
    """Where its records' emails are read (people: members, e-commerce customers), or None."""

    @property
    def actions(self) -> tuple[str, ...]:
        if self.kind == "engagement":
            return ("refresh",)
        if self.kind == "audience":
            return (*FORWARD_ACTIONS, "create_audience")
        return FORWARD_ACTIONS

    def run_conf(self, action: str) -> dict[str, object]:
        """The conf of a run the button ``action`` triggers (an e-commerce card runs its entity only)."""
        if action not in self.actions:
            raise KeyError(action)
        conf = dict(ACTION_CONF[action])
        if self.kind == "ecommerce":
            conf["entities"] = [self.entity]
        return conf


@dataclass(frozen=True)
class Catalogue:
    """The cards in display order, and the tables they read."""

    syncs: tuple[Sync, ...]
    forward_tables: WarehouseTables
    engagement_tables: WarehouseTables
    warehouse_conn_id: str
    engagement_config_error: str | None = None
    """Why the engagement pull's config could not be read (shown on its card), or None."""

    def get(self, key: str) -> Sync | None:
        return next((s for s in self.syncs if s.key == key), None)


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The syncs of this deployment, from the sync configs (read once per process)."""
    from mailchimp_provider.config import load_audience_config
    from mailchimp_provider.operators.ecommerce import PLURAL
    from mailchimp_provider.reverse.config import load_config as load_engagement_config
    from mailchimp_provider.sync.audience import ENTITY as MEMBER
    from mailchimp_provider.sync.ecommerce.config import ENTITIES

    audience = load_audience_config()
    forward = WarehouseTables(audience.table_prefix, audience.table_schema)
    try:
        engagement = load_engagement_config()
        engagement_tables, problem = WarehouseTables(engagement.table_prefix, engagement.schema), None
    except Exception as exc:  # noqa: BLE001 - one broken config must not take every card down
        log.warning("Dashboard: the engagement pull's config cannot be read (%s); its card reads the "
                    "audience sync's tables", exc)
        engagement_tables, problem = forward, str(exc)
    src = audience.source
    syncs = [Sync("audience", "Audience members", "audience", AUDIENCE_DAG_ID, MEMBER, "sync_members",
                  EmailSource(src.sql, src.key_column, src.email_column))]
    syncs += [
        Sync(entity, f"E-commerce {PLURAL[entity].replace('_', ' ')}", "ecommerce", ECOMMERCE_DAG_ID, entity,
             f"sync_{PLURAL[entity]}", CUSTOMER_EMAILS if entity == "customer" else None)
        for entity in ENTITIES
    ]
    syncs.append(Sync("engagement", "Engagement pull", "engagement", ENGAGEMENT_DAG_ID))
    return Catalogue(tuple(syncs), forward, engagement_tables, audience.warehouse_conn_id, problem)
