"""The dashboard's JSON API (``/mailchimp/api/...``): who may see what, and that every number it
shows is the number the warehouse holds. Data comes from real ``dag.test()`` runs of the audience
DAG against the emulator; the expected figures from SQL written against the contract's tables."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

ENDPOINTS_GET = ["/mailchimp/", "/mailchimp/api/me", "/mailchimp/api/syncs", "/mailchimp/api/syncs/audience",
                 "/mailchimp/api/syncs/audience/records?tab=failed", "/mailchimp/api/campaigns"]
ACTION = "/mailchimp/api/syncs/audience/actions/retry_failed"


def sql(engine: sa.Engine, query: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.text(query), params).all()


def by_reason(engine: sa.Engine, run_id: str, outcome: str) -> dict[str, int]:
    return {r[0]: r[1] for r in sql(
        engine, "SELECT reason, count(*) FROM mailchimp_sync_result WHERE run_id = :r AND entity = 'member' "
                "AND outcome = :o GROUP BY reason", r=run_id, o=outcome)}


# ------------------------------------------------------------------------------------------------
# who may see what
# ------------------------------------------------------------------------------------------------
def test_an_anonymous_request_is_refused_by_every_endpoint(client: Any, sqlite_warehouse: Any) -> None:
    for path in ENDPOINTS_GET:
        assert client.get(path, user=None).status_code == 401, path
    assert client.post(ACTION, user=None).status_code == 401
    bogus = {"Authorization": "Bearer not-a-token"}
    assert client.http.get("/mailchimp/api/syncs", headers=bogus).status_code in (401, 403)


def test_a_user_who_may_not_read_the_dags_is_refused_and_sees_no_card(client: Any, sqlite_warehouse: Any) -> None:
    for path in ENDPOINTS_GET[2:]:
        response = client.get(path, user="outsider")
        assert response.status_code == 403, (path, response.text)
        assert "mailchimp" in response.json()["detail"].lower()
    assert client.post(ACTION, user="outsider").status_code == 403
    me = client.get("/mailchimp/api/me", user="outsider").json()
    assert me["user"] == "outsider" and not any(s["read"] or s["trigger"] for s in me["syncs"].values())


def test_a_viewer_reads_everything_but_its_buttons_are_disabled_and_refused(client: Any, synced: Any) -> None:
    cards = client.get("/mailchimp/api/syncs", user="viewer").json()["syncs"]
    assert cards and not any(c["can_trigger"] for c in cards)
    assert client.get("/mailchimp/api/me", user="viewer").json()["syncs"]["audience"] == {
        "read": True, "trigger": False, "unpause": False}
    response = client.post(ACTION, user="viewer")
    assert response.status_code == 403 and "trigger" in response.json()["detail"]
    assert client.get("/mailchimp/api/syncs/audience/records?tab=quarantined", user="viewer").status_code == 200


def test_an_action_must_be_a_json_request(client: Any, audience_unpaused: Any) -> None:
    response = client.http.post(ACTION, headers=client._auth("admin"), data={"x": "1"})
    assert response.status_code == 415


# ------------------------------------------------------------------------------------------------
# the numbers
# ------------------------------------------------------------------------------------------------
def test_the_audience_card_counts_equal_the_sql_counts(client: Any, synced: Any) -> None:
    db = synced.harness.db
    last = synced.runs[-1].run_id
    cards = {c["key"]: c for c in client.get("/mailchimp/api/syncs").json()["syncs"]}
    assert set(cards) == {"audience", "customer", "product", "promo_rule", "promo_code", "order", "cart", "engagement"}
    card = cards["audience"]
    assert card["last_run"]["run_id"] == last and card["last_run"]["url"].endswith(f"/runs/{quote(last, safe='')}")
    assert card["last_dry_run"]["run_id"] == synced.dry_run.run_id

    counts = card["counts"]
    assert counts["synced"] == sum(by_reason(db, last, "ok").values())
    assert counts["failed"] == sum(by_reason(db, last, "failed").values()) == 2
    assert counts["skipped_by_reason"] == by_reason(db, last, "skipped")
    assert counts["skipped"] == sum(counts["skipped_by_reason"].values()) >= 1
    assert counts["pending"] == sum(by_reason(db, last, "pending").values())
    (quarantined,), = sql(db, "SELECT count(*) FROM mailchimp_sync_state WHERE entity = 'member' AND quarantined")
    assert counts["quarantined"] == quarantined == 2
    statuses = dict(sql(db, "SELECT status, count(*) FROM mailchimp_member GROUP BY status"))
    assert (counts["archived"], counts["cleaned"], counts["unsubscribed"]) == (
        statuses["archived"], statuses["cleaned"], statuses["unsubscribed"]) == (1, 1, 2)

    assert [t["run_id"] for t in card["trend"]] == [r.run_id for r in synced.runs]  # oldest first, no dry run
    first = synced.runs[0].run_id
    assert card["trend"][0]["ok"] == sum(by_reason(db, first, "ok").values()) == 7
    assert card["trend"][0]["failed"] == 2
    # No e-commerce run wrote to this warehouse. The Airflow metadata DB is shared by the tests of
    # one worker, so another test's e-commerce run may exist there; it must not be one of ours.
    customer_run = cards["customer"]["last_run"]
    assert cards["customer"]["counts"]["synced"] == 0
    assert customer_run is None or customer_run["run_id"] not in {r.run_id for r in synced.runs}
    assert client.get("/mailchimp/api/syncs/audience").json()["counts"] == counts


def test_the_failed_tab_lists_each_failed_record_with_its_reason_error_batch_and_log(client: Any, synced: Any) -> None:
    last = synced.runs[-1].run_id
    page = client.get("/mailchimp/api/syncs/audience/records", params={"tab": "failed"}).json()
    assert page["run_id"] == last and page["total"] == 2
    rows = {r["record_id"]: r for r in page["rows"]}
    assert set(rows) == {"fake1", "fake2"}
    row = rows["fake1"]
    assert (row["reason"], row["http_status"], row["error_title"]) == ("email_rejected", 400, "Invalid Resource")
    assert row["batch_id"] and row["error_detail"]
    assert row["log_url"].endswith(f"/dags/mailchimp_audience_sync/runs/{quote(last, safe='')}/tasks/sync_members")
    assert page["reasons"] == by_reason(synced.harness.db, last, "failed")


def test_failed_and_skipped_rows_show_the_email_to_users_who_may_read_the_dag(client: Any, synced: Any) -> None:
    db = synced.harness.db
    emails = dict(sql(db, "SELECT customer_id, email FROM customers"))  # the contract's source table
    for tab, expected in (("failed", {"fake1", "fake2"}), ("skipped", {"typo"})):
        page = client.get("/mailchimp/api/syncs/audience/records", params={"tab": tab}, user="viewer").json()
        shown = {r["record_id"]: r["email"] for r in page["rows"]}
        assert expected <= set(shown), (tab, shown)
        assert all(shown[record] == emails[record] for record in shown if record in emails), shown
    assert shown["typo"] == "no-at-sign.example.com"  # never sent, so only the source knows it
    refused = client.get("/mailchimp/api/syncs/audience/records", params={"tab": "failed"}, user="outsider")
    assert refused.status_code == 403 and "@" not in refused.text


def test_the_batch_view_shows_what_a_batch_carried(client: Any, synced: Any) -> None:
    db, last = synced.harness.db, synced.runs[-1].run_id
    (batch_id,), = sql(db, "SELECT batch_id FROM mailchimp_sync_result WHERE run_id = :r AND record_id = 'fake1'", r=last)
    counts = sql(db, "SELECT outcome, reason, count(*) FROM mailchimp_sync_result WHERE batch_id = :b "
                     "GROUP BY outcome, reason", b=batch_id)
    (dag_id, status), = sql(db, "SELECT dag_id, status FROM mailchimp_batch WHERE batch_id = :b", b=batch_id)
    view = client.get(f"/mailchimp/api/batches/{batch_id}", user="viewer").json()
    assert (view["batch"]["batch_id"], view["batch"]["dag_id"], view["batch"]["status"]) == (batch_id, dag_id, status)
    assert view["batch"]["log_url"].endswith("/tasks/sync_members")
    assert {(o, r, n) for o, reasons in view["counts"]["member"].items() for r, n in reasons.items()} == set(counts)
    failed = {r["record_id"]: r for r in view["rows"] if r["outcome"] == "failed"}
    assert failed["fake1"]["email"] == "test@shop-mail.net" and failed["fake1"]["error_title"] == "Invalid Resource"
    assert client.get(f"/mailchimp/api/batches/{batch_id}", user="outsider").status_code == 403
    assert client.get(f"/mailchimp/api/batches/{batch_id}", user=None).status_code == 401
    assert client.get("/mailchimp/api/batches/nope' OR '1'='1").status_code == 404


def test_the_quarantined_pulled_back_and_plan_tabs(client: Any, synced: Any) -> None:
    get = lambda tab: client.get("/mailchimp/api/syncs/audience/records", params={"tab": tab}).json()  # noqa: E731
    quarantined = get("quarantined")
    assert {r["record_id"] for r in quarantined["rows"]} == {"fake1", "fake2"}
    assert {(r["reason"], r["attempts"]) for r in quarantined["rows"]} == {("quarantined", 2)}
    assert all("Invalid Resource" in r["error_detail"] or r["error_detail"] for r in quarantined["rows"])
    archived = get("archived")
    assert archived["reasons"] == {"archived": 1, "cleaned": 1}
    assert {r["email"] for r in archived["rows"]} == {"gone@shop-mail.net", "bounced@shop-mail.net"}
    assert get("unsubscribed")["total"] == 2
    plan = get("plan")
    assert plan["run_id"] == synced.dry_run.run_id
    assert [(r["record_id"], r["reason"]) for r in plan["rows"]] == [("g01", "update")]
    assert get("pending")["total"] == 0
    other = client.get("/mailchimp/api/syncs/customer/records", params={"tab": "archived"})
    assert other.status_code == 404


def test_paging_walks_every_row_once_and_the_reason_filter_narrows(client: Any, synced: Any) -> None:
    db, last = synced.harness.db, synced.runs[0].run_id
    expected = sorted((r[0], r[1]) for r in sql(
        db, "SELECT reason, record_id FROM mailchimp_sync_result WHERE run_id = :r AND entity = 'member' "
            "AND outcome = 'failed'", r=last))
    # the last run's failed tab, one row per page
    seen, cursor = [], None
    while True:
        params = {"tab": "failed", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = client.get("/mailchimp/api/syncs/audience/records", params=params).json()
        seen += [(r["reason"], r["record_id"]) for r in page["rows"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == expected
    filtered = client.get("/mailchimp/api/syncs/audience/records",
                          params={"tab": "skipped", "reason": "quarantined"}).json()
    assert filtered["total"] == by_reason(db, synced.runs[-1].run_id, "skipped").get("quarantined", 0)
    assert all(r["reason"] == "quarantined" for r in filtered["rows"])


def test_a_hostile_filter_value_is_a_value_not_sql(client: Any, synced: Any) -> None:
    db = synced.harness.db
    for hostile in ("x' OR '1'='1", "'; DROP TABLE mailchimp_sync_result; --", "%", "email_rejected' --"):
        page = client.get("/mailchimp/api/syncs/audience/records", params={"tab": "failed", "reason": hostile})
        assert page.status_code == 200 and page.json()["rows"] == [] and page.json()["total"] == 0, hostile
    assert sql(db, "SELECT count(*) FROM mailchimp_sync_result")[0][0] > 0  # still there
    for cursor in ("not json", '["a"]', '[{"a": 1}, "b", "c"]', "[\"x') OR 1=1 --\", 1, 2, 3]"):
        response = client.get("/mailchimp/api/syncs/audience/records", params={"tab": "failed", "cursor": cursor})
        assert response.status_code == 400, cursor
    assert client.get("/mailchimp/api/syncs/audience/records", params={"tab": "sync_state"}).status_code == 422
    assert client.get("/mailchimp/api/syncs/audience/records", params={"limit": 10_000}).status_code == 422
    assert client.get("/mailchimp/api/syncs/nope").status_code == 404


# ------------------------------------------------------------------------------------------------
# the buttons
# ------------------------------------------------------------------------------------------------
def test_retry_failed_creates_a_run_with_the_param_and_that_run_sends_only_the_failed_records(
    client: Any, synced: Any, audience_unpaused: Any
) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    response = client.post(ACTION)
    assert response.status_code == 200, response.text
    run_id = response.json()["run"]["run_id"]
    with create_session() as session:
        run = session.scalar(sa.select(DagRun).where(DagRun.dag_id == "mailchimp_audience_sync", DagRun.run_id == run_id))
        assert run.conf == {"retry_failed": True} and run.triggering_user_name == "admin"

    # what such a run does, through the DAG: the two quarantined records go out again (and fail
    # again, their emails are fake); the changed g01 waits for the next ordinary run
    h = synced.harness
    ops = h.total_batch_ops()
    retry = h.run(retry_failed=True)
    assert h.total_batch_ops() == ops + 2
    sent = {k for k, r in h.results(retry.run_id).items() if r["http_status"] is not None}
    assert sent == {("fake1", "upsert"), ("fake2", "upsert")}
    assert h.state("fake1")["quarantined"]  # failed again: quarantined again
    normal = h.run()
    assert h.outcome(normal.run_id, "fake1") == [("upsert", "skipped", "quarantined")]
    assert h.outcome(normal.run_id, "g01") == [("upsert", "ok", "update")]


def test_every_button_triggers_its_run_conf(client: Any, audience_unpaused: Any) -> None:
    expected = {"sync_now": {}, "sync_all": {"full_refresh": True}, "dry_run": {"dry_run": True},
                "create_audience": {"ensure_only": True}}
    for action, conf in expected.items():
        response = client.post(f"/mailchimp/api/syncs/audience/actions/{action}")
        assert response.status_code == 200, (action, response.text)
        assert response.json()["run"]["conf"] == conf
    assert client.post("/mailchimp/api/syncs/audience/actions/refresh").status_code == 404


def test_a_paused_dag_is_said_so_instead_of_a_run_that_never_starts(client: Any, synced: Any) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from dashboard.conftest import set_paused

    def runs() -> int:
        with create_session() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(DagRun)
                                  .where(DagRun.dag_id == "mailchimp_audience_sync"))

    set_paused("mailchimp_audience_sync", True)
    before = runs()
    card = client.get("/mailchimp/api/syncs/audience").json()
    assert card["paused"] is True and card["can_unpause"] is True
    response = client.post(ACTION)
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["paused"] is True and body["can_unpause"] is True and "paused" in body["detail"]
    assert runs() == before  # no run left queued behind the pause
    # a viewer may not unpause (Airflow's PATCH /dags needs edit rights): the page disables it
    assert client.get("/mailchimp/api/me", user="viewer").json()["syncs"]["audience"]["unpause"] is False
    assert client.get("/mailchimp/api/syncs/audience", user="viewer").json()["can_unpause"] is False
    assert client.get("/mailchimp/api/me").json()["syncs"]["audience"]["unpause"] is True

    set_paused("mailchimp_audience_sync", False)  # what the Unpause button has Airflow do
    assert client.get("/mailchimp/api/syncs/audience").json()["paused"] is False
    assert client.post(ACTION).status_code == 200 and runs() == before + 1


def test_create_audience_runs_only_the_ensure_step(make_harness: Any, sqlite_warehouse: Any) -> None:
    h = make_harness(sqlite_warehouse)
    h.insert(customer("c1", "one@shop-mail.net"))
    run = h.run(ensure_only=True)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"ensure_audience": "success", "sync_members": "skipped"}
    assert h.list_id() and h.members() == []


from dashboard.conftest import customer  # noqa: E402


# ------------------------------------------------------------------------------------------------
# campaigns
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("days", [3])
def test_the_campaign_view_shows_the_report_figures_and_a_series_per_day(client: Any, warehouse: Any, days: int) -> None:
    from mailchimp_provider.warehouse.tables import WarehouseTables

    WarehouseTables().create_all(warehouse.engine)
    rows = [
        {"campaign_id": f"c{i}", "title": f"Newsletter {i}", "send_time": f"2024-05-0{1 + i // 2} 10:00:00",
         "emails_sent": 100 * (i + 1), "opens": 50 + i, "unique_opens": 40 + i, "clicks": 10 + i,
         "unsubscribed": i, "hard_bounces": 1, "soft_bounces": i}
        for i in range(2 * days)
    ]
    cols = ", ".join(rows[0])
    with warehouse.engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO mailchimp_campaign ({cols}, synced_at) VALUES "
                             f"({', '.join(':' + c for c in rows[0])}, CURRENT_TIMESTAMP)"), rows)
    data = client.get("/mailchimp/api/campaigns").json()
    got = {c["campaign_id"]: c for c in data["campaigns"]}
    assert set(got) == {r["campaign_id"] for r in rows}
    for r in rows:
        c = got[r["campaign_id"]]
        assert (c["sends"], c["opens"], c["unique_opens"], c["clicks"], c["unsubscribed"], c["bounces"]) == (
            r["emails_sent"], r["opens"], r["unique_opens"], r["clicks"], r["unsubscribed"],
            r["hard_bounces"] + r["soft_bounces"])
    assert [p["day"] for p in data["series"]] == [f"2024-05-0{d + 1}" for d in range(days)]
    assert data["series"][0]["sends"] == 100 + 200 and data["series"][0]["campaigns"] == 2
    assert client.get("/mailchimp/api/campaigns", user="outsider").status_code == 403


def test_a_warehouse_without_the_bookkeeping_tables_is_a_503_that_says_so(client: Any, sqlite_warehouse: Any) -> None:
    response = client.get("/mailchimp/api/syncs")
    assert response.status_code == 503
    assert "warehouse_default" in response.json()["detail"] and "sync DAG has run" in response.json()["detail"]
