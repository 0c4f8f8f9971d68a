"""The steps of the README demo (``make demo``), each run through Airflow: see scripts/demo.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import re
from pathlib import Path
from typing import Any, Callable

import json

import requests
import sqlalchemy as sa

API_KEY = "0123456789abcdef0123456789abcdef-us1"


def dags_test(airflow: Callable[..., Any], env: dict[str, str], dag_id: str) -> str:
    """Run ``airflow dags test DAG_ID`` and return the run id Airflow gave the run."""
    out = airflow(env, "dags", "test", dag_id)
    found = re.findall(r"run_id=(manual__[^\s,]+)", out.stdout + out.stderr)
    if not found:
        raise SystemExit(f"could not find the run id of {dag_id} in Airflow's output (see .demo/airflow.log)")
    return found[-1]


def task_summary(metadata_db: sa.Engine, dag_id: str, run_id: str, task_id: str) -> dict[str, dict[str, int]]:
    """What a sync task returned (its XCom): the counts of the summary table its log ends with.

    The demo prints these rather than counting again, so its figures are the task log's, with the
    same meaning of "records" (source rows plus erasure requests of people not among them) and
    "unchanged" (records that needed nothing in this run).
    """
    stmt = sa.text("SELECT value FROM xcom WHERE dag_id = :dag AND run_id = :run AND task_id = :task "
                   "AND key = 'return_value'")
    with metadata_db.connect() as conn:
        raw = conn.execute(stmt, {"dag": dag_id, "run": run_id, "task": task_id}).scalar()
    if raw is None:
        raise SystemExit(f"task {task_id} of {dag_id} run {run_id} returned no summary (see .demo/airflow.log)")
    value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return json.loads(value) if isinstance(value, str) else value


def print_outcomes(report: dict[str, dict[str, int]]) -> None:
    """``{outcome: {reason: count}}`` as an indented table."""
    for outcome in ("ok", "skipped", "failed", "planned", "unchanged"):
        reasons = {reason: n for reason, n in (report.get(outcome) or {}).items() if n}
        if not reasons:
            continue
        print(f"  {outcome:<9} {sum(reasons.values()):>6}")
        for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"      {count:>6}  {reason}")


ENGAGEMENT_COLUMNS = (
    ("campaign", "campaign_id"), ("title", "title"), ("sent", "emails_sent"), ("opens", "opens"),
    ("unique", "unique_opens"), ("clicks", "clicks"), ("bounces", "bounces"), ("unsubs", "unsubscribes"),
)


def engagement_table(rows: list[dict[str, Any]]) -> str:
    """The engagement report as a table; every column as wide as its longest value (titles whole)."""
    cells = [[h for h, _ in ENGAGEMENT_COLUMNS]] + [
        ["" if row.get(key) is None else str(row.get(key)) for _, key in ENGAGEMENT_COLUMNS] for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(ENGAGEMENT_COLUMNS))]
    text_columns = {0, 1}  # campaign id and title left-aligned, numbers right-aligned
    return "\n".join(
        "  " + "  ".join(v.ljust(widths[i]) if i in text_columns else v.rjust(widths[i]) for i, v in enumerate(line))
        for line in cells
    )


def send_demo_campaign(base_url: str, root_url: str, list_id: str) -> str:
    """Create a campaign for the audience and have the emulator deliver it two days ago, with its
    deterministic synthetic activity (opens, clicks, bounces, unsubscribes) already visible."""
    auth = ("demo", API_KEY)
    campaign = requests.post(
        f"{base_url}/campaigns",
        auth=auth,
        json={
            "type": "regular",
            "recipients": {"list_id": list_id},
            "settings": {
                "subject_line": "Our autumn collection is here",
                "title": "Autumn launch",
                "from_name": "Example Shop",
                "reply_to": "news@shop-mail.net",
            },
        },
        timeout=30,
    )
    campaign.raise_for_status()
    campaign_id = campaign.json()["id"]
    sent_at = (datetime.now(timezone.utc) - timedelta(days=2)).replace(microsecond=0).isoformat()
    delivered = requests.post(
        f"{root_url}/_emulator/activity",
        json={"campaign_id": campaign_id, "send_time": sent_at, "synthetic": True},
        timeout=60,
    )
    delivered.raise_for_status()
    print(f"  campaign {campaign_id} delivered to {delivered.json()['emails_sent']} subscribed members")
    return campaign_id


def run_demo(
    *,
    port: int,
    demo_dir: Path,
    env: dict[str, str],
    airflow: Callable[..., Any],
    banner: Callable[[str], None],
) -> None:
    import os

    os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
    from mailchimp_provider.demo.data import seed_demo_warehouse
    from mailchimp_provider.reverse.report import engagement_report, engagement_report_sql
    from mailchimp_provider.sync.ecommerce.config import ENTITIES
    from mailchimp_provider.sync.ecommerce.report import format_run_counts, run_counts
    from mailchimp_provider.operators.ecommerce import PLURAL
    from mailchimp_provider.warehouse.tables import WarehouseTables

    warehouse = demo_dir / "warehouse.db"
    engine = sa.create_engine(f"sqlite:///{warehouse}")
    metadata_db = sa.create_engine(f"sqlite:///{Path(env['AIRFLOW_HOME']) / 'airflow.db'}")
    base_url = f"http://127.0.0.1:{port}/3.0"
    root_url = f"http://127.0.0.1:{port}"

    banner("Seeding the SQLite warehouse (realistic data, bad rows of every kind)")
    counts = seed_demo_warehouse(engine)
    print("  " + ", ".join(f"{table}: {n}" for table, n in counts.items()))

    banner("Preparing Airflow (metadata DB, the mailchimp_api pool)")
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", "mailchimp_api", "1", "Mailchimp API: <= 10 connections per key")

    banner("airflow dags test mailchimp_audience_sync")
    run_id = dags_test(airflow, env, "mailchimp_audience_sync")
    print(f"  run {run_id}: audience members per outcome and reason (as in the sync_members task log)")
    print_outcomes(task_summary(metadata_db, "mailchimp_audience_sync", run_id, "sync_members"))

    banner("airflow dags test mailchimp_ecommerce_sync")
    run_id = dags_test(airflow, env, "mailchimp_ecommerce_sync")
    print(format_run_counts(run_counts(run_id), title=f"  run {run_id}: records per entity"))
    for entity in ENTITIES:
        print(f"  {PLURAL[entity]}: per outcome and reason (as in the sync_{PLURAL[entity]} task log)")
        print_outcomes(task_summary(metadata_db, "mailchimp_ecommerce_sync", run_id, f"sync_{PLURAL[entity]}"))

    banner("Sending a campaign in the emulator")
    lists = requests.get(f"{base_url}/lists", auth=("demo", API_KEY), timeout=30).json()["lists"]
    send_demo_campaign(base_url, root_url, lists[0]["id"])

    banner("airflow dags test mailchimp_engagement_pull")
    dags_test(airflow, env, "mailchimp_engagement_pull")
    tables = WarehouseTables()
    print("  Engagement per campaign, from the warehouse tables:")
    print("  " + engagement_report_sql(tables).strip().replace("\n", "\n  "))
    rows = engagement_report(engine, tables)
    print(engagement_table(rows))

    banner("airflow dags test mailchimp_audience_sync (again: only what changed)")
    run_id = dags_test(airflow, env, "mailchimp_audience_sync")
    print(f"  run {run_id}: only changed records are sent (unsubscribes and bounces from the campaign stay as they are)")
    print_outcomes(task_summary(metadata_db, "mailchimp_audience_sync", run_id, "sync_members"))
    print(f"\nEverything is in {warehouse} (query it with sqlite3) and {demo_dir / 'airflow.log'}.")
