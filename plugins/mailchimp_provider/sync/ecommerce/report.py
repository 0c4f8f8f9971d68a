"""Per-entity counts of one e-commerce run: synced, skipped and failed records.

A record can have several result rows in a run (a POST answered "already exists" is recorded as
``skipped`` and its healing PATCH as ``ok``), so records are counted once, by their best outcome:
``ok`` (synced) > ``failed`` > ``planned`` (dry run) > ``skipped``. The README demo prints these.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mailchimp_provider.sync.ecommerce.config import ENTITIES

_RANK = {"ok": 4, "failed": 3, "planned": 2, "skipped": 1}
_LABEL = {4: "synced", 3: "failed", 2: "planned", 1: "skipped"}
COLUMNS = ("synced", "skipped", "failed", "planned")


def ecommerce_run_counts(db: sa.Engine, tables: Any, run_id: str) -> dict[str, dict[str, int]]:
    """``{entity: {"synced": n, "skipped": n, "failed": n, "planned": n}}`` for ``run_id``, in
    dependency order, every entity present (zeros included)."""
    t = tables.sync_result
    rank = sa.case(*((t.c.outcome == outcome, value) for outcome, value in _RANK.items()), else_=0)
    per_record = (
        sa.select(t.c.entity, t.c.record_id, sa.func.max(rank).label("rank"))
        .where(t.c.run_id == run_id, t.c.entity.in_(ENTITIES))
        .group_by(t.c.entity, t.c.record_id)
        .subquery()
    )
    stmt = sa.select(per_record.c.entity, per_record.c.rank, sa.func.count()).group_by(per_record.c.entity, per_record.c.rank)
    counts = {entity: dict.fromkeys(COLUMNS, 0) for entity in ENTITIES}
    with db.connect() as conn:
        for entity, value, n in conn.execute(stmt):
            label = _LABEL.get(int(value or 0))
            if label:
                counts[entity][label] += int(n)
    return counts


def run_counts(run_id: str, *, warehouse_conn_id: str = "warehouse_default", table_prefix: str = "mailchimp_",
               table_schema: str | None = None) -> dict[str, dict[str, int]]:
    """``ecommerce_run_counts`` through an Airflow connection (what a demo script calls)."""
    from mailchimp_provider.warehouse.connection import get_engine
    from mailchimp_provider.warehouse.tables import WarehouseTables

    return ecommerce_run_counts(get_engine(warehouse_conn_id), WarehouseTables(table_prefix, table_schema), run_id)


def format_run_counts(counts: dict[str, dict[str, int]], *, title: str = "") -> str:
    """A small fixed-width table: one line per entity."""
    cols = [c for c in COLUMNS if c != "planned" or any(v.get("planned") for v in counts.values())]
    header = ["entity", *cols]
    rows = [[entity, *(str(values.get(c, 0)) for c in cols)] for entity, values in counts.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r))  # noqa: E731
    lines = [fmt(header), "-" * (sum(widths) + 2 * (len(widths) - 1)), *(fmt(r) for r in rows)]
    return "\n".join(([title] if title else []) + lines)
