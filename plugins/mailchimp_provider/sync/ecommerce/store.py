"""The Mailchimp E-commerce store: ensured from the config, and flagged ``is_syncing`` during backfills.

``is_syncing: true`` tells Mailchimp not to fire e-commerce automations (order notifications,
abandoned cart, product follow-ups) on the records being loaded, so history does not email
customers. It is set at the start of an initial backfill or a full refresh and cleared by a
teardown task that runs even when the sync fails, so a failed run never leaves automations off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mailchimp_provider.errors import MailchimpConfigError, MailchimpNotFoundError
from mailchimp_provider.sync.ecommerce.config import EcommerceSyncConfig
from mailchimp_provider.sync.paths import api_path

log = logging.getLogger(__name__)

# Store fields we own and keep equal to the config (``list_id`` can never change in Mailchimp).
_MANAGED_FIELDS = ("name", "currency_code", "domain", "platform", "email_address", "money_format",
                   "primary_locale", "timezone", "phone")


@dataclass(frozen=True)
class StoreStatus:
    """What ``ensure_store`` found or did."""

    store_id: str
    list_id: str
    created: bool
    """The store did not exist: everything must be sent as new (stored state is stale)."""
    updated_fields: tuple[str, ...]
    is_syncing: bool

    def to_dict(self) -> dict[str, Any]:
        return {"store_id": self.store_id, "list_id": self.list_id, "created": self.created,
                "updated_fields": list(self.updated_fields), "is_syncing": self.is_syncing}


@lru_cache(maxsize=512)
def store_path(store_id: str, *parts: str) -> str:
    """``/ecommerce/stores/{store_id}/...``, every segment percent-encoded (``sync.paths``).
    Remembered: every order and product of a run is created under the same collection path."""
    return api_path("ecommerce", "stores", store_id, *parts)


def resolve_list_id(hook: Any, config: EcommerceSyncConfig, *, create: bool = True) -> str | None:
    """The audience id of the store: ``store.list_id``, the one list named ``store.list_name``, or
    else the audience sync's audience, found (or created, as the audience config says) by the
    audience sync's own ``ensure_audience``. None in a dry run when that audience does not exist."""
    store = config.store
    if store.list_id:
        return store.list_id
    if not store.list_name:
        from mailchimp_provider.sync.audience import ensure_audience

        audience = config.audience()
        if create:
            return ensure_audience(hook, audience, source=str(config.audience_config_path)).list_id
        if audience.audience.id:
            return audience.audience.id
        name, where = audience.audience.name, f"{config.audience_config}: audience.name"
    else:
        name, where = store.list_name, "store.list_name"
    matches = [item["id"] for item in hook.paginate("/lists", "lists", fields=["id", "name"])
               if (item.get("name") or "").strip() == (name or "").strip()]
    if not matches and not create:
        return None
    if len(matches) != 1:
        found = "no audience" if not matches else f"{len(matches)} audiences ({', '.join(matches)})"
        raise MailchimpConfigError(f"{where} {name!r} matches {found}; set store.list_id to the audience id instead.")
    return matches[0]


def ensure_store(hook: Any, config: EcommerceSyncConfig, *, create: bool = True) -> StoreStatus | None:
    """Create the store if missing, else bring the fields we manage in line with the config.

    Raises ``MailchimpConfigError`` when the existing store belongs to another audience: Mailchimp
    never moves a store, and silently syncing into the wrong audience would mail the wrong people.
    With ``create=False`` (dry run) nothing is written: None when the store is missing, and the
    fields that would change when it exists.
    """
    store = config.store
    list_id = resolve_list_id(hook, config, create=create)
    if list_id is None:
        return None
    wanted = store.body(list_id)
    try:
        current = hook.get(store_path(store.id))
    except MailchimpNotFoundError:
        if not create:
            return None
        created = hook.post("/ecommerce/stores", json=wanted)
        log.info("Created Mailchimp store %r in audience %s", store.id, list_id)
        return StoreStatus(store.id, list_id, True, (), bool((created or {}).get("is_syncing")))
    if current.get("list_id") != list_id:
        raise MailchimpConfigError(
            f"Mailchimp store {store.id!r} belongs to audience {current.get('list_id')!r}, but the config "
            f"says {list_id!r}. A store's audience cannot change: use another store id, or delete the store."
        )
    changes = {k: wanted[k] for k in _MANAGED_FIELDS if k in wanted and current.get(k) != wanted[k]}
    if changes and not create:
        return StoreStatus(store.id, list_id, False, tuple(sorted(changes)), bool(current.get("is_syncing")))
    if changes:
        hook.patch(store_path(store.id), json=changes)
        log.info("Updated store %r fields: %s", store.id, ", ".join(sorted(changes)))
    return StoreStatus(store.id, list_id, False, tuple(sorted(changes)), bool(current.get("is_syncing")))


def set_syncing(hook: Any, store_id: str, flag: bool) -> bool:
    """Set ``is_syncing``; returns whether a change was needed. A missing store is not an error
    when clearing (nothing can fire for a store that does not exist)."""
    try:
        current = hook.get(store_path(store_id), params={"fields": "id,is_syncing"})
    except MailchimpNotFoundError:
        if flag:
            raise
        return False
    if bool(current.get("is_syncing")) == flag:
        return False
    hook.patch(store_path(store_id), json={"is_syncing": flag})
    log.info("Store %r: is_syncing set to %s", store_id, flag)
    return True


# ------------------------------------------------------------------------------------------------
# per run: prepare (setup task) and release (teardown task)
# ------------------------------------------------------------------------------------------------
def prepare_store(
    hook: Any, db: Any, tables: Any, config: EcommerceSyncConfig, *, full_refresh: bool, dry_run: bool
) -> dict[str, Any]:
    """Create the bookkeeping tables, ensure the store, and flag it ``is_syncing`` for a backfill.

    A backfill is the first run into this store (no record confirmed in it yet) or a full refresh.
    When the store had to be (re)created, state confirmed for an earlier store of the same id is
    stale: its ``mailchimp_id``/``payload_hash`` are cleared so every record is sent as new,
    instead of PATCHing records that no longer exist. A dry run writes nothing to Mailchimp.
    """
    tables.create_all(db)
    status = ensure_store(hook, config, create=not dry_run)
    store_id = config.store.id
    cleared = 0
    if status is not None and status.created:
        cleared = forget_store_state(db, tables, store_id)
        if cleared:
            log.warning("Store %r was created now: cleared the confirmed state of %d record(s) synced to an "
                        "earlier store with this id; they are sent again as new.", store_id, cleared)
    initial = status is None or status.created or not has_confirmed_records(db, tables, store_id)
    backfill = initial or full_refresh
    flagged = False
    if backfill and not dry_run:
        set_syncing(hook, store_id, True)
        flagged = True
    log.info("Store %r: %s%s", store_id,
             "initial backfill" if initial else ("full refresh" if full_refresh else "incremental run"),
             " (is_syncing set: automations paused until the run ends)" if flagged else "")
    return {
        "store_id": store_id,
        "exists": status is not None,
        "created": bool(status and status.created),
        "list_id": status.list_id if status else None,
        "updated_fields": list(status.updated_fields) if status else [],
        "backfill": backfill,
        "is_syncing": flagged,
        "stale_state_cleared": cleared,
    }


def release_store(hook: Any, store_id: str, *, dry_run: bool = False) -> bool:
    """Clear ``is_syncing`` (teardown: runs whether the sync succeeded or failed)."""
    if dry_run:
        return False
    return set_syncing(hook, store_id, False)


def has_confirmed_records(db: Any, tables: Any, store_id: str) -> bool:
    """Whether any record is confirmed in this store (else this run is the initial backfill)."""
    import sqlalchemy as sa

    t = tables.sync_state
    stmt = sa.select(t.c.record_id).where(t.c.scope == store_id, t.c.mailchimp_id.is_not(None)).limit(1)
    with db.connect() as conn:
        return conn.execute(stmt).first() is not None


def forget_store_state(db: Any, tables: Any, store_id: str) -> int:
    """Clear what ``sync_state`` says Mailchimp holds in ``store_id`` (history columns are kept)."""
    import sqlalchemy as sa

    t = tables.sync_state
    stmt = sa.update(t).where(t.c.scope == store_id, t.c.mailchimp_id.is_not(None)).values(
        mailchimp_id=None, payload_hash=None)
    with db.begin() as conn:
        return int(conn.execute(stmt).rowcount or 0)
