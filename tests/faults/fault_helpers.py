"""Small readers of the emulator's counters shared by the fault suite (a module, not conftest:
``from conftest import`` picks whichever folder's conftest was loaded last)."""

from __future__ import annotations

from typing import Any


def emulator_stats(emulator: Any) -> dict[str, Any]:
    """``GET /_emulator/stats``."""
    return emulator.admin("GET", "stats")


def route_total(emulator: Any, route: str, kind: str = "total") -> int:
    """How often the emulator dispatched ``route`` (``kind="batch"``: inside batches only)."""
    return int(emulator_stats(emulator)["routes"].get(route, {}).get(kind, 0))


STORM_RATE = 0.3


def storm(emulator: Any, rate: float = STORM_RATE, *, seed: int = 7) -> None:
    """Fail ``rate`` of all /3.0 requests with 429/5xx or a held 504; ``POST /batches`` failures
    (other than 429) happen *after* the batch was accepted, so a blind replay would duplicate it."""
    kinds = {"statuses": [500, 502, 503, 504], "timeout_seconds": 0.2}
    emulator.admin("POST", "faults", json={"storm_seed": seed, "storm": [
        {"rate": rate, "method": "POST", "path_prefix": "/batches", "after_processing": True, **kinds},
        {"rate": rate, "retry_after": 0, **kinds, "statuses": [429, *kinds["statuses"]]},
    ]})


def calm(emulator: Any) -> None:
    emulator.admin("POST", "faults", json={"storm": []})


def wipe_bookkeeping(engine: Any) -> None:
    """Empty every table the provider writes (sync state, results, ledger, engagement tables), as
    before a first run: the source tables stay."""
    import sqlalchemy as sa

    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(engine)
    existing = set(sa.inspect(engine).get_table_names())
    with engine.begin() as conn:
        for table in reversed(tables.metadata.sorted_tables):
            if table.name in existing:
                conn.execute(table.delete())


def audience_rows(n: int) -> list[dict[str, Any]]:
    """``n`` customers of the audience sync: most opted in, some not, some with tags."""
    from sync.conftest import customer

    rows = []
    for i in range(n):
        rows.append(customer(f"c{i:04d}", f"buyer.{i}@shop-example.com", minutes=i, marketing_opt_in=i % 5 != 0,
                             tags="vip" if i % 7 == 0 else None))
    return rows


def audience_outcome(h: Any, run_id: str) -> dict[str, Any]:
    """What the audience sync did, independent of ids the emulator hands out: the members of the
    audience by email, and every record's result rows."""
    members = sorted(
        (m["email_address"], m["status"], tuple(sorted((m.get("merge_fields") or {}).items())),
         tuple(sorted(t["name"] for t in m.get("tags") or [])))
        for m in h.emulator.api("GET", f"/lists/{h.list_id()}/members", params={"count": 1000}).json()["members"]
    )
    results = sorted((rid, op, r["outcome"], r["reason"] or "") for (rid, op), r in h.results(run_id).items())
    return {"members": members, "results": results}


def ledger_rows(engine: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's ``mailchimp_batch`` ledger rows: the batches the sync knows it submitted."""
    import sqlalchemy as sa

    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables().batch
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).where(t.c.run_id == run_id)).mappings()]


def ecommerce_outcome(emulator: Any, engine: Any, run_id: str) -> dict[str, Any]:
    """What the e-commerce sync did, independent of when: the store's resources and order lines in
    the emulator, and every record's result rows."""
    from ecommerce_harness import results, store_doc

    doc = store_doc(emulator)
    return {
        "store": {kind: sorted(doc[kind]) for kind in ("customers", "products", "orders", "promo_rules")},
        "lines": sorted((oid, len(o.get("lines") or [])) for oid, o in doc["orders"].items()),
        "results": sorted((r["entity"], r["record_id"], r["outcome"], r["reason"] or "") for r in results(engine, run_id)),
    }


_CLEAN_ECOMMERCE: dict[str, tuple[dict[str, Any], dict[tuple[str, str], int]]] = {}


def clean_ecommerce_run(warehouse: Any, emulator: Any) -> tuple[dict[str, Any], dict[tuple[str, str], int]]:
    """Seed the shop into this test's (fresh) warehouse and return what a clean run of it does:
    ``(ecommerce_outcome, result rows per record)``. The clean run happens once per warehouse kind
    and process (the outcome depends only on the shop's data); the caller then resets the emulator
    and the bookkeeping before its own run."""
    from ecommerce_harness import run_sync, seed_shop
    from test_kills import result_row_counts

    seed_shop(warehouse)
    if warehouse.kind not in _CLEAN_ECOMMERCE:
        clean = run_sync()
        assert clean.state == "success"
        rows = result_row_counts(warehouse.engine, clean.run_id)
        assert rows, "the clean run wrote no result rows"
        _CLEAN_ECOMMERCE[warehouse.kind] = (ecommerce_outcome(emulator, warehouse.engine, clean.run_id), rows)
    return _CLEAN_ECOMMERCE[warehouse.kind]
