"""What a run of the three DAGs leaves behind, normalised so two runs on the same data compare equal.

Used by the stack's equality test: the stack (CeleryExecutor, deferrable, two workers) and
``dag.test()`` (one process), each against a fresh emulator and a fresh warehouse with the demo data.

Left out, because they legitimately differ between two runs (and only these):

* **ids the emulator draws at random**: the audience's ``list_id`` (replaced by the audience's
  name wherever it appears), members' ``unique_email_id``, ``contact_id`` and ``web_id``, tag and
  segment ids (account-wide counters whose order follows the order batches ran in), batch ids;
* **Airflow's run ids and batch ids** (``sync_result.run_id``/``batch_id``/``operation_id``,
  ``sync_state.scope``/``contact_id``, and ``sync_state.payload_hash``: a member's hash covers the
  path it was written to, which holds the random list id) and the ledger (``mailchimp_batch``: how operations were cut
  into batches depends on deferral and prefetch, not on the data);
* **timestamps**: every date-time column and emulator field (when something happened, not what);
  the engagement rows keep their keys and counts, so an event at another second still counts;
* **free text built from the above**: ``sync_state.last_error`` / ``extra`` (they quote batch ids
  and Mailchimp's per-request ``instance`` uuid), ``rejected_record.record`` / ``raw``.

Everything else is compared: each member's email, status, merge fields and tag names; each
e-commerce object whole; every ``sync_result`` row's record, operation, outcome, reason, HTTP
status and error title; every ``sync_state`` row's confirmed columns; every engagement table's
row count and key contents.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa

MEMBER_FIELDS = ("email_address", "status", "merge_fields", "email_type", "vip", "language")
TIME_KEYS = {"created_at", "updated_at", "timestamp_signup", "timestamp_opt", "last_changed", "date_created",
             "create_time", "send_time", "processed_at", "last_open", "last_click", "timestamp"}
RANDOM_KEYS = {"unique_email_id", "contact_id", "web_id", "list_id", "_links", "id_hash"}
SYNC_RESULT = ("entity", "record_id", "operation", "outcome", "reason", "http_status", "error_title")
SYNC_STATE = ("entity", "record_id", "mailchimp_id", "email", "status", "tags_managed",
              "last_outcome", "attempts", "quarantined")
ENGAGEMENT_CONTENT: dict[str, tuple[str, ...]] = {
    "list": ("name", "double_optin", "member_count", "unsubscribe_count", "cleaned_count"),
    "member": ("email_address", "status", "merge_fields", "unsubscribe_reason"),
    "unsubscribe": ("campaign_id", "email_address", "reason"),
    "campaign": ("title", "status", "emails_sent", "opens", "unique_opens", "clicks", "unsubscribed",
                 "hard_bounces", "soft_bounces"),
    "activity": ("email_address", "bounce_type", "url"),
    "recipient": ("email_address", "status", "open_count"),
    "automation": ("title", "status", "emails_sent"),
    "automation_email": ("title", "status", "emails_sent"),
    "automation_recipient": ("email_address", "status", "open_count"),
    "automation_activity": ("email_address", "bounce_type", "url"),
    "segment": ("name", "type", "member_count"),
    "segment_member": ("email_address", "status"),
    "rejected": ("stream", "field"),
}
"""Per engagement table, the content columns compared beside its (non-time, non-random) key."""


def _clean(value: Any, lists: dict[str, str]) -> Any:
    """``value`` with time and random keys dropped, list ids replaced by the audience's name."""
    if isinstance(value, dict):
        return {k: _clean(v, lists) for k, v in sorted(value.items())
                if not k.startswith("_") and k not in TIME_KEYS and k not in RANDOM_KEYS}
    if isinstance(value, list):
        return [_clean(v, lists) for v in value]
    if isinstance(value, str):
        return lists.get(value, value)
    return value


def emulator_outcome(state: dict[str, Any]) -> dict[str, Any]:
    """From ``GET /_emulator/state``: per audience (by name) its members, per store its contents."""
    lists = {list_id: f"<list {body.get('name')}>" for list_id, body in state.get("lists", {}).items()}
    members = {}
    for list_id, by_hash in state.get("members", {}).items():
        members[lists.get(list_id, list_id)] = {
            sub_hash: {
                **{f: _clean(member.get(f), lists) for f in MEMBER_FIELDS},
                "tags": sorted(t.get("name") if isinstance(t, dict) else str(t) for t in member.get("tags") or []),
            }
            for sub_hash, member in by_hash.items()
        }
    stores = {store_id: _clean(store, lists) for store_id, store in state.get("stores", {}).items()}
    return {"members": members, "stores": stores}


def warehouse_outcome(engine: sa.Engine, tables: Any) -> dict[str, Any]:
    """From the warehouse: ``sync_result`` and ``sync_state`` rows, and each engagement table's
    row count and key contents (as multisets: a dropped column never merges two rows)."""
    inspector = sa.inspect(engine)
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        lists = {}
        if inspector.has_table(tables.list.name):
            lists = {r.list_id: f"<list {r.name}>" for r in conn.execute(sa.select(tables.list.c.list_id, tables.list.c.name))}
        r = tables.sync_result.c
        rows = conn.execute(sa.select(*[r[c] for c in SYNC_RESULT])).all()
        out["sync_result_counts"] = Counter((row.entity, row.outcome, row.reason or "") for row in rows)
        out["sync_result"] = Counter(tuple(row) for row in rows)
        s = tables.sync_state.c
        out["sync_state"] = Counter(
            tuple(_clean(v, lists) for v in row) for row in conn.execute(sa.select(*[s[c] for c in SYNC_STATE])))
        for kind, content in ENGAGEMENT_CONTENT.items():
            table = tables.table(kind)
            if not inspector.has_table(table.name):
                out[kind] = None
                continue
            # the key without its timestamps and the emulator's counter ids (segments, tags, automations)
            keys = [c for c in table.primary_key.columns if not _is_time(c) and c.name not in ("id", "segment_id")]
            cols = [*keys, *[table.c[name] for name in content if name in table.c and table.c[name] not in keys]]
            found = [tuple(_clean(v, lists) for v in row) for row in conn.execute(sa.select(*cols))]
            out[kind] = {"rows": len(found), "contents": Counter(found)}
    return out


def _is_time(column: sa.Column) -> bool:
    kind = column.type
    impl = getattr(kind, "impl", kind)
    return isinstance(impl, sa.DateTime) or isinstance(kind, sa.DateTime)


def differences(left: Any, right: Any, path: str = "", limit: int = 25) -> list[str]:
    """Readable differences between two outcomes (at most ``limit``)."""
    found: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(found) >= limit or a == b:
            return
        if isinstance(a, Counter) and isinstance(b, Counter):
            for key in sorted(set(a) | set(b), key=repr):
                if a[key] != b[key] and len(found) < limit:
                    found.append(f"{where}: {key!r}: stack {a[key]} vs dag.test() {b[key]}")
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=repr):
                walk(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{where}/{key}")
            return
        found.append(f"{where}: stack {a!r:.300} vs dag.test() {b!r:.300}")

    walk(left, right, path)
    return found
