"""The no-change check's short way: a digest of the source row beside the confirmed content hash.

A rerun skips rebuilding a member's content when ``sync_state.source_hash`` equals the rules'
digest of the row; these tests pin what that digest covers (every column the content is built from,
the configuration and the list, not the timestamps), when it is stored and cleared, that the
extraction still rejects a bad timestamp it no longer converts, and that an older ``sync_state``
gains the column in place on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.batches.results import OperationResult
from mailchimp_provider.config import AudienceSyncConfig, load_audience_config
from mailchimp_provider.sync.audience import AudienceRules
from mailchimp_provider.sync.engine import OpRef, RunContext, StateDigest, StateRow, SyncEngine
from mailchimp_provider.warehouse.extract import REJECTED, converted, row_reader, types_for
from mailchimp_provider.warehouse.tables import WarehouseTables

ROW: dict[str, Any] = {
    "customer_id": "c1", "email": "Ann@Shop-Mail.net ", "first_name": "Ann", "last_name": "Lee",
    "company": "Acme", "phone": "555", "customer_type": "Retail", "tags": "VIP,Gold",
    "address1": "1 Main St", "city": "Springfield", "province": "IL", "postal_code": "62701",
    "country_code": "US", "marketing_opt_in": True, "no_marketing": False, "is_guest": False,
    "created_at": "2024-01-01 10:00:00", "updated_at": "2024-02-01 10:00:00",
}


def rules(config: AudienceSyncConfig | None = None, list_id: str = "list1") -> AudienceRules:
    return AudienceRules(config=config or load_audience_config(), list_id=list_id)


def test_the_digest_covers_every_column_the_content_is_built_from_and_not_the_timestamps() -> None:
    r = rules()
    base = r.source_digest(ROW)
    assert base is not None and base == r.source_digest(dict(ROW))
    assert "created_at" not in r.columns_read() and "updated_at" not in r.columns_read()
    for column in [c for c in ROW if c not in ("created_at", "updated_at", "customer_id")]:
        value = ROW[column]
        changed = (not value) if isinstance(value, bool) else f"{value}x"
        assert r.source_digest({**ROW, column: changed}) != base, column
    assert r.source_digest({**ROW, "updated_at": "2025-01-01 00:00:00", "created_at": None}) == base


def test_a_configuration_or_list_change_changes_every_digest() -> None:
    config = load_audience_config()  # the shipped config
    base = rules(config).source_digest(ROW)
    fields = dict(config.merge_fields)
    fields["LNAME"] = dataclasses.replace(fields["LNAME"], column="company")
    changed_mapping = dataclasses.replace(config, merge_fields=fields)
    changed_tags = dataclasses.replace(config, tags=dataclasses.replace(config.tags, separator=";"))
    changed_consent = dataclasses.replace(config, consent=dataclasses.replace(config.consent, double_opt_in=True))
    for other in (changed_mapping, changed_tags, changed_consent):
        assert rules(other).source_digest(ROW) != base
    assert rules(config, list_id="list2").source_digest(ROW) != base


def confirmed_digest(r: AudienceRules, row: dict[str, Any], **overrides: Any) -> StateDigest:
    """The digest a confirmed write of ``row`` leaves: its content hash, tags and source digest."""
    email = "ann@shop-mail.net"
    _, tags, content_hash = r._member_content(row, email, True, False)
    values = {"payload_hash": content_hash, "mailchimp_id": "h", "status": "subscribed",
              "tags_managed": frozenset(tags), "source_hash": r.source_digest(row)}
    values.update(overrides)
    return StateDigest(**values)


def test_the_short_way_clears_only_rows_whose_digest_matches_and_keeps_the_per_run_checks() -> None:
    r = rules()
    ctx = RunContext(run_id="r")
    digest = confirmed_digest(r, ROW)
    assert r.is_unchanged("c1", ROW, digest, ctx, True)
    changed = {**ROW, "last_name": "Other"}
    same = r.source_digest(changed) == digest.source_hash
    assert not same and not r.is_unchanged("c1", changed, digest, ctx, same)
    # per-run facts still win over a matching digest
    assert not r.is_unchanged("c1", ROW, digest, RunContext(run_id="r", data={"erase_by_customer": {"c1": "t"}}), True)
    assert not r.is_unchanged("c1", {**ROW, "no_marketing": True}, digest, ctx, True)
    assert not r.is_unchanged("c1", ROW, digest._replace(status="erased"), ctx, True)
    assert not r.is_unchanged("c1", ROW, digest._replace(payload_hash=None), ctx, True)


def _result(op_id: str, status: int, body: Any) -> OperationResult:
    return OperationResult(operation_id=op_id, status_code=status, body=body)


def test_a_confirmed_write_stores_the_digest_only_when_content_and_tags_match() -> None:
    r = rules()
    ctx = RunContext(run_id="r")
    plan = r._plan_row("c1", ROW, None, {}, ctx)
    (op,) = plan.ops
    assert op.context["source_hash"] == r.source_digest(ROW)
    ref = op.ref("member")
    answer = {"id": "h", "email_address": "ann@shop-mail.net", "status": "subscribed",
              "tags": [{"name": "Retail"}, {"name": "VIP"}, {"name": "Gold"}]}
    assert r.interpret(op, ref, _result(str(ref), 200, answer), None).state["source_hash"] == op.context["source_hash"]
    # Mailchimp kept only some tags: the tags write still has to happen, so no digest yet
    partial = {**answer, "tags": [{"name": "Retail"}]}
    assert "source_hash" not in r.interpret(op, ref, _result(str(ref), 200, partial), None).state


def test_the_engine_drops_a_digest_when_a_confirmed_column_changes_without_one(sqlite_warehouse: Any) -> None:
    engine = SyncEngine(sqlite_warehouse.engine, WarehouseTables(), rules(), RunContext(run_id="r"))
    state = StateRow("member", "c1", payload_hash="a", mailchimp_id="h", source_hash="s")
    ref = OpRef("member", "c1", "b", "t")
    now = datetime.now(timezone.utc)
    from mailchimp_provider.sync.engine import Outcome

    cleared = engine._next_state(ref, state, Outcome("failed", "member_not_found", state={"payload_hash": None}),
                                 _result(str(ref), 404, {}), now)
    assert cleared.source_hash is None
    kept = engine._next_state(ref, state, Outcome("ok", "unsubscribe", state={"status": "unsubscribed"}),
                              _result(str(ref), 200, {}), now)
    assert kept.source_hash == "s"
    replaced = engine._next_state(ref, state, Outcome("ok", "tags", state={"tags_managed": ["A"], "source_hash": "n"}),
                                  _result(str(ref), 200, {}), now)
    assert replaced.source_hash == "n"


def test_unconverted_columns_are_still_checked_and_a_full_read_is_restored() -> None:
    keys = ["customer_id", "marketing_opt_in", "created_at"]
    types = types_for("customers")
    read = row_reader(keys, types, convert_only={"customer_id", "marketing_opt_in"})
    row = read(("c1", 1, "2024-01-01 10:00:00"))
    assert row["marketing_opt_in"] is True and row["created_at"] == "2024-01-01 10:00:00"
    assert converted(row, types)["created_at"] == datetime(2024, 1, 1, 10, tzinfo=timezone.utc)
    bad = read(("c2", 1, "not a date"))
    assert bad[REJECTED].column == "created_at"


def _old_sync_state(engine: sa.Engine) -> None:
    """``sync_state`` as an earlier version created it (no ``source_hash``), with one row."""
    tables = WarehouseTables()
    old = sa.MetaData()
    columns = [c.copy() for c in tables.sync_state.columns if c.name != "source_hash"]
    table = sa.Table(tables.sync_state.name, old, *columns)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert().values(entity="member", record_id="c1", payload_hash="a", attempts=0,
                                           quarantined=False, updated_at=datetime.now(timezone.utc)))


def test_an_older_sync_state_gains_the_column_in_place(warehouse: Any) -> None:
    _old_sync_state(warehouse.engine)
    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    names = {c["name"] for c in sa.inspect(warehouse.engine).get_columns(tables.sync_state.name)}
    assert "source_hash" in names
    engine = SyncEngine(warehouse.engine, tables, rules(), RunContext(run_id="r"))
    assert engine.load_digests(["c1"])["c1"] == StateDigest("a", None, None, frozenset(), None)
    engine.stamp_source_hashes([{"r": "c1", "p": "a", "s": "d1"}, {"r": "c1", "p": "stale", "s": "d2"}])
    assert engine.load_digests(["c1"])["c1"].source_hash == "d1"


def _customer(customer_id: str, **columns: Any) -> dict[str, Any]:
    base = {k: v for k, v in ROW.items() if k not in ("created_at", "updated_at")}
    return {**base, "customer_id": customer_id, "email": f"{customer_id}@shop-mail.net",
            "created_at": datetime(2024, 1, 1, tzinfo=timezone.utc), **columns}


def _pass(engine: SyncEngine) -> tuple[int, dict[str, list[str]]]:
    from mailchimp_provider.sync.engine import _PassStats

    stats = _PassStats()
    plans = list(engine._iter_plans(stats, set(), record_skips=False))
    return stats.unchanged, {p.record_id: [op.operation for op in p.ops] for p in plans if p.ops}


def _source_hashes(engine: SyncEngine) -> dict[str, str | None]:
    t = engine.tables.sync_state
    with engine.db.connect() as conn:
        return dict(conn.execute(sa.select(t.c.record_id, t.c.source_hash)).all())


def test_a_rerun_stamps_rows_it_found_unchanged_the_long_way_and_changes_still_replan(sqlite_warehouse: Any) -> None:
    """After an upgrade (no stored digests) the rerun checks every row the long way and stamps the
    unchanged ones (not in a dry run); a changed mapped column, email or configuration still
    re-plans the row, stamped or not."""
    from mailchimp_provider.warehouse.connection import _create_engine
    from mailchimp_provider.warehouse.source_tables import create_source_tables

    db = _create_engine(sa.engine.make_url(sqlite_warehouse.url))  # WAL, as get_engine makes it
    meta = create_source_tables(db)
    with db.begin() as conn:
        conn.execute(meta.tables["customers"].insert(), [_customer("c1"), _customer("c2"), _customer("c3")])
    tables = WarehouseTables()
    config = load_audience_config()

    def engine_for(cfg: AudienceSyncConfig = config, **ctx: Any) -> SyncEngine:
        eng = SyncEngine(db, tables, AudienceRules(config=cfg, list_id="list1"), RunContext(run_id="r", **ctx))
        eng.prepare()
        return eng

    first = engine_for()
    states = []
    for rows in first.source_chunks():  # confirmed states as an earlier version left them: no digest
        for row in rows:
            _, tags, content_hash = first.rules._member_content(row, row["email"], True, False)
            states.append(StateRow("member", row["customer_id"], payload_hash=content_hash, mailchimp_id="h",
                                   email=row["email"], status="subscribed", tags_managed=tags).to_row())
    first._write(states=states)

    assert _pass(engine_for(dry_run=True)) == (3, {})
    assert set(_source_hashes(first).values()) == {None}  # a dry run writes nothing
    assert _pass(first) == (3, {})
    stamped = _source_hashes(first)
    assert None not in stamped.values() and len(set(stamped.values())) == 3

    with db.begin() as conn:
        customers = meta.tables["customers"]
        conn.execute(customers.update().where(customers.c.customer_id == "c1").values(last_name="Changed"))
        conn.execute(customers.update().where(customers.c.customer_id == "c2").values(email="c2.new@shop-mail.net"))
    unchanged, planned = _pass(engine_for())
    assert (unchanged, planned) == (1, {"c1": ["upsert"], "c2": ["upsert"]})
    assert _source_hashes(first) == stamped  # a changed row keeps its old digest until a write is confirmed

    fields = dict(config.merge_fields)
    fields["LNAME"] = dataclasses.replace(fields["LNAME"], column="company")
    unchanged, planned = _pass(engine_for(dataclasses.replace(config, merge_fields=fields)))
    assert unchanged == 0 and set(planned) == {"c1", "c2", "c3"}
