"""How long a page of the dashboard's tabs takes on PostgreSQL with 1,000,000 ``sync_result`` rows.

    .venv/bin/python -m scripts.bench_dashboard [--rows 1000000] [--pg postgresql+psycopg2://postgres@127.0.0.1:5432/test]

Builds a scratch database (dropped afterwards) with the project's tables (``create_all``: its
indexes included), fills ``mailchimp_sync_result`` in SQL (``generate_series``) with 30 runs of
the audience entity, the newest holding half the rows (ok, failed under 5 reasons, skipped under 4,
pending), ``ANALYZE``s it as a sync run does, then times what one page of a tab costs: the counts
by reason of the whole tab plus 50 rows (first page, a reason filter, a page deep in the tab by
its cursor), the quarantined tab on 20,000 quarantined ``sync_state`` rows, and the overview's
counts of 30 runs. Each figure is the median of 7 tries after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from typing import Callable

import sqlalchemy as sa

from mailchimp_provider.dashboard import queries
from mailchimp_provider.warehouse.tables import WarehouseTables

RUNS = 30
FAILED_REASONS = ("email_rejected", "compliance_state", "invalid_merge_field", "rate_limited", "server_error")
SKIPPED_REASONS = ("invalid_email", "duplicate_id", "quarantined", "archived_in_mailchimp")


def fill(engine: sa.Engine, t: WarehouseTables, rows: int) -> str:
    """Insert ``rows`` result rows in SQL; returns the newest run's id."""
    per_old_run = (rows - rows // 2) // (RUNS - 1)
    newest = rows - per_old_run * (RUNS - 1)
    name = t.sync_result.name
    with engine.begin() as conn:
        for run in range(RUNS):
            n = newest if run == RUNS - 1 else per_old_run
            conn.execute(sa.text(f"""
                INSERT INTO {name} (run_id, entity, record_id, operation, outcome, reason, http_status,
                                    error_title, error_detail, batch_id, dag_id, task_id, map_index, recorded_at)
                SELECT 'run_{run:02d}', 'member', 'C' || lpad(g::text, 8, '0'), 'upsert',
                       CASE WHEN g % 100 < 85 THEN 'ok' WHEN g % 100 < 93 THEN 'failed'
                            WHEN g % 100 < 99 THEN 'skipped' ELSE 'pending' END,
                       CASE WHEN g % 100 < 85 THEN 'update'
                            WHEN g % 100 < 93 THEN (ARRAY{list(FAILED_REASONS)!r})[1 + g % 5]
                            WHEN g % 100 < 99 THEN (ARRAY{list(SKIPPED_REASONS)!r})[1 + g % 4]
                            ELSE 'result_lost' END,
                       CASE WHEN g % 100 BETWEEN 85 AND 92 THEN 400 END,
                       CASE WHEN g % 100 BETWEEN 85 AND 92 THEN 'Invalid Resource' END,
                       CASE WHEN g % 100 >= 85 THEN 'detail of record ' || g END,
                       'batch_' || (g / 5000), 'mailchimp_audience_sync', 'sync_members', -1,
                       now() - make_interval(days => {RUNS - run})
                FROM generate_series(1, {n}) g
            """))
        conn.execute(sa.text(f"""
            INSERT INTO {t.sync_state.name} (entity, record_id, last_outcome, attempts, quarantined, last_error, updated_at)
            SELECT 'member', 'C' || lpad(g::text, 8, '0'), CASE WHEN g % 2 = 0 THEN 'quarantined' ELSE 'refused' END,
                   3, true, 'Invalid Resource', now()
            FROM generate_series(1, 20000) g
        """))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM ANALYZE {name}")
        conn.exec_driver_sql(f"VACUUM ANALYZE {t.sync_state.name}")
    return f"run_{RUNS - 1:02d}"


def median_ms(fn: Callable[[], object], tries: int = 7) -> float:
    fn()
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)

    admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
    db_name = f"mc_bench_dashboard_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{db_name}"')
    engine = sa.create_engine(args.pg.rsplit("/", 1)[0] + "/" + db_name)
    try:
        t = WarehouseTables()
        t.create_all(engine)
        start = time.perf_counter()
        newest = fill(engine, t, args.rows)
        total = engine.connect().execute(sa.text(f"SELECT count(*) FROM {t.sync_result.name}")).scalar_one()
        print(f"{total:,} sync_result rows in {RUNS} runs (the newest: {args.rows - (RUNS - 1) * ((args.rows - args.rows // 2) // (RUNS - 1)):,}), filled in "
              f"{time.perf_counter() - start:.0f} s")

        def page(tab: str, run_id: str | None, **kwargs: object) -> Callable[[], queries.Page]:
            def go() -> queries.Page:
                with engine.connect() as conn:
                    return queries.records_page(conn, queries.tab_source(t, tab, "member", run_id), **kwargs)
            return go

        failed_first = page("failed", newest)()
        cursor = None
        with engine.connect() as conn:  # a cursor about 3/4 of the way into the failed tab
            row = conn.execute(sa.text(
                f"SELECT reason, record_id, operation FROM {t.sync_result.name} WHERE entity = 'member' "
                "AND run_id = :r AND outcome = 'failed' ORDER BY reason, record_id, operation "
                "OFFSET :o LIMIT 1"), {"r": newest, "o": int(failed_first.total * 0.75)}).one()
            cursor = queries.encode_cursor(list(row))
        def find_run() -> str | None:
            with engine.connect() as conn:
                return queries.first_run_with_rows(conn, t, "member", [f"run_{r:02d}" for r in reversed(range(RUNS))])

        cases = {
            f"failed tab, first page ({failed_first.total:,} rows in the tab)": page("failed", newest),
            "failed tab, filtered by reason": page("failed", newest, reason="compliance_state"),
            "failed tab, a page 3/4 deep (cursor)": page("failed", newest, cursor=cursor),
            "skipped tab, first page": page("skipped", newest),
            "pending tab, first page": page("pending", newest),
            "quarantined tab (20,000 records), first page": page("quarantined", None),
            "plan tab (no dry run: empty)": page("plan", "no-such-run"),
            "finding the tab's run (the newest of 30 with rows)": find_run,
        }
        worst = 0.0
        for label, fn in cases.items():
            ms = median_ms(fn)
            worst = max(worst, ms)
            print(f"  {ms:7.1f} ms  {label}")

        def overview() -> object:
            with engine.connect() as conn:
                return queries.outcome_counts(conn, t, "member", [f"run_{r:02d}" for r in range(RUNS)])

        print(f"  {median_ms(overview, tries=3):7.1f} ms  overview: counts by outcome and reason of {RUNS} runs "
              f"({total:,} rows; not a tab page)")
        print(f"slowest tab page: {worst:.1f} ms (target: under 300 ms)")
        return 0 if worst < 300 else 1
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
