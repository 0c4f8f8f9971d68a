"""The dashboard in Debian's Chromium (Playwright), served by a real ``airflow api-server`` that
loaded the plugin, after real runs of the audience DAG: what a person sees equals the warehouse.

One api-server and one browser for the module; screenshots go to docs/images/dashboard-*.png (the
README shows them). In CI (``CI=true``) a missing Chromium or Playwright fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORDS = {"admin": "admin-password", "viewer": "viewer-password"}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = pytest.mark.slow


def _require(ok: bool, what: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI", pytrace=False)
    pytest.skip(f"{what} is not available")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api_server(synced: Any, tmp_path: Path) -> Iterator[str]:
    """``airflow api-server`` on this session's metadata DB, the test's warehouse and configs."""
    port = _free_port()
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "dashboard-browser-test-" + "s" * 64,
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "emulator")]),
    }
    env.pop("AIRFLOW__CORE__AUTH_MANAGER", None)
    log = (tmp_path / "api-server.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--port", str(port),
                             "--host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            try:
                if requests.get(base + "/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("api-server did not answer in 120 s:\n" + (tmp_path / "api-server.log").read_text()[-3000:])
        yield base
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


@pytest.fixture
def page(api_server: str) -> Iterator[Any]:
    _require(Path(CHROMIUM).exists(), f"Debian's chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "the playwright package")
    token = requests.post(api_server + "/auth/token", json={"username": "admin", "password": PASSWORDS["admin"]},
                          timeout=30)
    assert token.status_code in (200, 201), token.text
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_cookies([{"name": "_token", "value": token.json()["access_token"], "url": api_server}])
        tab = context.new_page()
        tab.base = api_server  # type: ignore[attr-defined]
        yield tab
        browser.close()


def _insert_campaigns(engine: sa.Engine) -> None:
    rows = [{"campaign_id": f"cmp{i}", "title": f"Spring newsletter {i}", "send_time": f"2024-04-{10 + i} 09:00:00",
             "emails_sent": 1000 + 50 * i, "opens": 420 + 30 * i, "unique_opens": 300 + 20 * i,
             "clicks": 80 + 9 * i, "unsubscribed": 2 + i % 3, "hard_bounces": 3, "soft_bounces": i % 4}
            for i in range(8)]
    cols = ", ".join(rows[0])
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO mailchimp_campaign ({cols}, synced_at) VALUES "
                             f"({', '.join(':' + c for c in rows[0])}, CURRENT_TIMESTAMP)"), rows)


def _count(page: Any, sync: str, key: str) -> int:
    return int(page.locator(f'[data-sync="{sync}"] [data-count="{key}"] b').inner_text())


@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
def test_the_dashboard_in_chromium_shows_the_warehouse_and_its_buttons_work(synced: Any, page: Any) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from airflow.models.dag import DagModel

    from dashboard.conftest import set_paused

    db = synced.harness.db
    _insert_campaigns(db)
    last = synced.runs[-1].run_id
    IMAGES.mkdir(parents=True, exist_ok=True)
    set_paused("mailchimp_audience_sync", True)  # as Airflow creates DAGs (dags_are_paused_at_creation)

    # the overview: the audience card's numbers are the SQL counts of the last run
    page.goto(page.base + "/mailchimp/")
    page.wait_for_selector("body[data-ready]")
    with db.connect() as conn:
        counts = dict(conn.execute(sa.text(
            "SELECT outcome, count(*) FROM mailchimp_sync_result WHERE run_id = :r AND entity = 'member' "
            "GROUP BY outcome"), {"r": last}).all())
        quarantined = conn.execute(sa.text(
            "SELECT count(*) FROM mailchimp_sync_state WHERE entity = 'member' AND quarantined")).scalar_one()
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM mailchimp_member GROUP BY status")).all())
    assert _count(page, "audience", "failed") == counts["failed"] == 2
    assert _count(page, "audience", "skipped") == counts["skipped"]
    assert _count(page, "audience", "synced") == counts.get("ok", 0)
    assert _count(page, "audience", "quarantined") == quarantined
    assert _count(page, "audience", "unsubscribed") == statuses["unsubscribed"]
    assert page.locator('[data-sync="audience"] [data-testid="trend"] rect').count() >= 2
    page.screenshot(path=str(IMAGES / "dashboard-overview.png"), full_page=True)

    # the Failed tab: the failed records with their reasons
    page.click('[data-sync="audience"] h2 a')
    page.wait_for_selector('[data-testid="records"] tbody tr')
    rows = page.locator('[data-testid="records"] tbody tr')
    listed = {rows.nth(i).get_attribute("data-record"): rows.nth(i).locator('[data-col="reason"]').inner_text()
              for i in range(rows.count())}
    assert listed == {"fake1": "email_rejected", "fake2": "email_rejected"}
    with db.connect() as conn:  # the admin may read the DAG: each row shows the record's email
        emails = dict(conn.execute(sa.text("SELECT customer_id, email FROM customers")).all())
    assert {rows.nth(i).get_attribute("data-record"): rows.nth(i).locator('[data-col="email"]').inner_text()
            for i in range(rows.count())} == {r: emails[r] for r in listed}
    page.screenshot(path=str(IMAGES / "dashboard-failed.png"), full_page=True)

    # Retry failed on the paused DAG: the page says it is paused and offers to unpause it first
    # (Airflow's PATCH /api/v2/dags, as this user); then the run is created, with the param set
    page.click('button.view[data-view="overview"]')
    page.wait_for_selector('[data-sync="audience"] [data-testid="paused"] button[data-action="unpause"]:not([disabled])')
    page.click('[data-sync="audience"] button[data-action="retry_failed"]')
    page.wait_for_selector('[data-testid="unpause-and-run"]')
    assert "is paused" in page.locator("#message").inner_text()
    page.screenshot(path=str(IMAGES / "dashboard-paused.png"))
    page.click('[data-testid="unpause-and-run"]')
    page.wait_for_function("document.body.dataset.lastRun")
    with create_session() as session:
        assert session.scalar(sa.select(DagModel.is_paused).where(DagModel.dag_id == "mailchimp_audience_sync")) is False
    run_id = page.evaluate("document.body.dataset.lastRun")
    with create_session() as session:
        run = session.scalar(sa.select(DagRun).where(DagRun.dag_id == "mailchimp_audience_sync", DagRun.run_id == run_id))
        assert run is not None and run.conf == {"retry_failed": True} and run.triggering_user_name == "admin"
    assert "created" in page.locator("#message").inner_text()

    # the campaign view: a chart with a line per figure and the table
    page.click('button.view[data-view="campaigns"]')
    page.wait_for_selector('[data-testid="campaign-chart"] path[data-series="opens"]')
    assert page.locator('[data-testid="campaign-table"] tbody tr').count() == 8
    box = page.locator('[data-testid="campaign-chart"]').bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100
    page.screenshot(path=str(IMAGES / "dashboard-campaigns.png"), full_page=True)

    # the entry in Airflow's own navigation, and the page inside the Airflow UI
    page.goto(page.base + "/plugin/mailchimp")
    page.wait_for_selector("iframe", timeout=60_000)
    frame = page.frame_locator("iframe").first
    frame.locator("body[data-ready]").wait_for(timeout=60_000)
    assert page.get_by_role("link", name="Mailchimp").count() + page.get_by_text("Mailchimp").count() >= 1
    page.screenshot(path=str(IMAGES / "dashboard-in-airflow.png"))
