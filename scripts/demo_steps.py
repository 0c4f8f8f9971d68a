"""The steps of the README demo (``make demo``), each run through Airflow: see scripts/demo.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import re
from pathlib import Path
from typing import Any, Callable

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


def print_outcomes(report: dict[str, dict[str, int]]) -> None:
    """``{outcome: {reason: count}}`` as an indented table."""
    for outcome in ("ok", "skipped", "failed", "planned", "unchanged"):
        reasons = {reason: n for reason, n in (report.get(outcome) or {}).items() if n}
        if not reasons:
            continue
        print(f"  {outcome:<9} {sum(reasons.values()):>6}")
        for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"      {count:>6}  {reason}")


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
    from mailchimp_provider.sync.audience import sync_report
    from mailchimp_provider.sync.ecommerce_report import format_run_counts, run_counts
    from mailchimp_provider.warehouse.tables import WarehouseTables

    warehouse = demo_dir / "warehouse.db"
    engine = sa.create_engine(f"sqlite:///{warehouse}")
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
    print(f"  run {run_id}: audience members per outcome and reason")
    print_outcomes(sync_report(run_id))

    banner("airflow dags test mailchimp_ecommerce_sync")
    run_id = dags_test(airflow, env, "mailchimp_ecommerce_sync")
    print(format_run_counts(run_counts(run_id), title=f"  run {run_id}: records per entity"))

    banner("Sending a campaign in the emulator")
    lists = requests.get(f"{base_url}/lists", auth=("demo", API_KEY), timeout=30).json()["lists"]
    send_demo_campaign(base_url, root_url, lists[0]["id"])

    banner("airflow dags test mailchimp_engagement_pull")
    dags_test(airflow, env, "mailchimp_engagement_pull")
    tables = WarehouseTables()
    print("  Engagement per campaign, from the warehouse tables:")
    print("  " + engagement_report_sql(tables).strip().replace("\n", "\n  "))
    rows = engagement_report(engine, tables)
    header = ("campaign", "title", "sent", "opens", "unique", "clicks", "bounces", "unsubs")
    print("  " + "  ".join(f"{h:>10}" for h in header))
    for row in rows:
        values = (
            row["campaign_id"],
            (row.get("title") or "")[:10],
            row.get("emails_sent"),
            row.get("opens"),
            row.get("unique_opens"),
            row.get("clicks"),
            row.get("bounces"),
            row.get("unsubscribes"),
        )
        print("  " + "  ".join(f"{v!s:>10}" for v in values))

    banner("airflow dags test mailchimp_audience_sync (again: only what changed)")
    run_id = dags_test(airflow, env, "mailchimp_audience_sync")
    print(f"  run {run_id}: only changed records are sent (unsubscribes and bounces from the campaign stay as they are)")
    print_outcomes(sync_report(run_id))
    print(f"\nEverything is in {warehouse} (query it with sqlite3) and {demo_dir / 'airflow.log'}.")
