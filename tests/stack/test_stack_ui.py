"""The Airflow UI of the stack, in Debian's Chromium driven by Playwright, as a person would use it.

The screenshots are kept in docs/images/ (the README shows them). Playwright never downloads a
browser here: it drives /usr/bin/chromium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from airflow_api import AirflowApi

from scripts.stack import API_KEY, SHIPPED_DAGS, Stack

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
UI_CONN = "mailchimp_from_the_form"


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: object, stack: Stack) -> Iterator[object]:
    """A logged-in page (the login form of Airflow's simple auth manager)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{stack.api_url}/auth/login?next=%2Fdags", wait_until="networkidle")
    page.fill("input[name=username]", stack.user)
    page.fill("input[name=password]", stack.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dags**")
    yield page
    context.close()


def test_the_dag_list_shows_the_three_dags_without_import_errors(page: object, stack: Stack) -> None:
    errors = AirflowApi(stack).import_errors()
    assert errors == [], "\n".join(f"{e['filename']}: {e['stack_trace'][-1500:]}" for e in errors)
    page.goto(f"{stack.api_url}/dags?tags=mailchimp", wait_until="networkidle")
    for dag_id in SHIPPED_DAGS:
        page.get_by_role("link", name=dag_id).first.wait_for()
    page.screenshot(path=str(IMAGES / "stack-dag-list.png"))
    assert "Import Error" not in page.inner_text("body")


def test_a_mailchimp_connection_made_in_the_form_keeps_its_port_and_tests_ok(page: object, stack: Stack) -> None:
    api = AirflowApi(stack)
    try:
        api.call("DELETE", f"/connections/{UI_CONN}")
    except AssertionError:
        pass
    port = int(stack.emulator_url.rsplit(":", 1)[1])
    page.goto(f"{stack.api_url}/connections", wait_until="networkidle")
    page.get_by_role("button", name="Add Connection").click()
    form = page.get_by_role("dialog")
    form.locator("input[name=connection_id]").fill(UI_CONN)
    form.locator("input[aria-autocomplete=list]").fill("Mailchimp")
    page.get_by_role("option", name="Mailchimp").click()
    form.locator("input[name=host]").fill("127.0.0.1")
    form.locator("input[name=port]").fill(str(port))
    form.locator("input[name=password]").fill(API_KEY)
    page.screenshot(path=str(IMAGES / "stack-connection-form.png"))
    form.get_by_role("button", name="Save").click()
    form.wait_for(state="hidden")

    saved = api.call("GET", f"/connections/{UI_CONN}")
    assert (saved["conn_type"], saved["host"], saved["port"]) == ("mailchimp", "127.0.0.1", port)

    row = page.locator("tr", has_text=UI_CONN)
    row.get_by_role("button", name="Test Connection").click()
    outcome = page.get_by_text(re.compile(r"^Test Connection (Successful|Failed)$")).first
    outcome.wait_for(timeout=60_000)
    page.screenshot(path=str(IMAGES / "stack-connection-test.png"))
    toast = page.locator("[data-scope=toast]").first.inner_text()
    assert outcome.inner_text() == "Test Connection Successful", toast
    assert f"Connected to http://127.0.0.1:{port}/3.0" in toast


def test_the_batch_link_of_sync_members_opens_and_its_log_shows_the_summary_table(
    page: object, stack: Stack, audience_run: str
) -> None:
    import sqlalchemy as sa

    task_url = f"{stack.api_url}/dags/mailchimp_audience_sync/runs/{quote(audience_run, safe='')}/tasks/sync_members"
    page.goto(f"{task_url}/details", wait_until="networkidle")  # extra links are on the Details tab
    # Mailchimp has no page for a batch: the link opens the sync dashboard's, signed in as this user
    # (same origin, so Airflow's UI opens it in the same tab)
    page.get_by_role("link", name="Mailchimp batch").click()
    page.wait_for_url(re.compile(r".*/mailchimp/#batch/.*"))
    batch_page = page
    found = re.search(r"/mailchimp/#batch/([0-9a-f]+)$", batch_page.url)
    assert found, batch_page.url
    batch_page.get_by_test_id("batch-status").wait_for()
    assert batch_page.get_by_test_id("batch-status").inner_text() == "finished"
    engine = sa.create_engine(stack.warehouse_url)
    with engine.connect() as conn:
        expected = {(o, r or "(none)"): n for o, r, n in conn.execute(sa.text(
            "SELECT outcome, reason, count(*) FROM mailchimp_sync_result WHERE batch_id = :b GROUP BY outcome, reason"),
            {"b": found.group(1)})}
    engine.dispose()
    rows = batch_page.locator('[data-testid="batch-counts"] tbody tr')
    shown = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        shown[(cells.nth(1).inner_text(), cells.nth(2).inner_text())] = int(cells.nth(3).inner_text())
    assert shown == expected and expected
    batch_page.screenshot(path=str(IMAGES / "stack-batch-link.png"), full_page=True)

    page.goto(task_url, wait_until="networkidle")  # the Logs tab
    page.get_by_text(re.compile(r"Mailchimp member sync, run")).first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"totals: failed=\d+, ok=\d+")).first.scroll_into_view_if_needed()
    page.screenshot(path=str(IMAGES / "stack-task-log.png"))
