"""The dashboard's FastAPI app: the page at ``/mailchimp/`` and its JSON API under ``/mailchimp/api/``.

=================================================  ==================================================
``GET  /api/me``                                   the user, and per sync: may read, trigger, unpause
``GET  /api/syncs``                                overview cards (syncs whose DAG the user may read)
``GET  /api/syncs/{key}``                          one card
``GET  /api/syncs/{key}/records?tab=&reason=&cursor=&limit=``   one page of a tab
``POST /api/syncs/{key}/actions/{action}``         trigger a run (JSON body; the user's permissions);
                                                   409 ``{"paused": true}`` while the DAG is paused
``GET  /api/campaigns``                            per-campaign figures and the per-day series
``GET  /api/batches/{batch_id}``                   one batch: ledger row, results by outcome, records
                                                   not through (the tasks' "Mailchimp batch" link: #batch/ID)
=================================================  ==================================================

A card's *last run* is the newest non-dry run of its DAG that wrote rows for its entity (an
e-commerce run can sync a subset of entities); its counts are that run's ``sync_result`` rows by
outcome and reason, plus ``pending`` (that run's unconfirmed writes and operations in batches still
open), ``quarantined`` (now) and, on the audience card, members Mailchimp reports archived, cleaned
or unsubscribed. The trend covers the last 30 such runs. The *Plan* tab lists the newest dry run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import exc as sa_exc
from fastapi import FastAPI, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from mailchimp_provider.dashboard import airflow_runs, queries
from mailchimp_provider.dashboard.auth import UserDep, may, require
from mailchimp_provider.dashboard.syncs import Sync, catalogue

STATIC = Path(__file__).parent / "static"
TREND_RUNS = 30

app = FastAPI(
    title="Mailchimp sync dashboard",
    description="What was synced to Mailchimp, what failed and why, and the buttons to fix it.",
    docs_url=None,
    redoc_url=None,
)


def _engine():  # noqa: ANN202
    from mailchimp_provider.warehouse.connection import get_engine

    return get_engine(catalogue().warehouse_conn_id)


def _sync_or_404(key: str) -> Sync:
    sync = catalogue().get(key)
    if sync is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No sync {key!r}.")
    return sync


# ------------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------------
@app.get("/", response_class=HTMLResponse, include_in_schema=False)
def page(user: UserDep) -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@app.get("/static/{name}", include_in_schema=False)
def asset(name: Literal["dashboard.js", "dashboard.css"], user: UserDep) -> FileResponse:
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(STATIC / name, media_type=media)


@app.exception_handler(HTTPException)
async def _errors(request: Request, exc: HTTPException) -> JSONResponse | HTMLResponse:
    """A browser that opens the page without being signed in gets a link to Airflow's login."""
    if exc.status_code == 401 and "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(
        request.scope.get("root_path", "") + "/api/"
    ):
        base = airflow_runs.ui_base()
        return HTMLResponse(
            f'<p>Sign in to Airflow first: <a href="{base}/" target="_top">Airflow</a></p>', status_code=401
        )
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@app.exception_handler(sa_exc.SQLAlchemyError)
async def _warehouse_errors(request: Request, exc: sa_exc.SQLAlchemyError) -> JSONResponse:
    """A warehouse that cannot answer (unreachable, tables not created yet) is a 503 that says so."""
    first = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
    return JSONResponse({"detail": f"The warehouse ({catalogue().warehouse_conn_id}) cannot answer: {first}. "
                                   "The bookkeeping tables exist once a sync DAG has run."}, status_code=503)


# ------------------------------------------------------------------------------------------------
# the API
# ------------------------------------------------------------------------------------------------
@app.get("/api/me")
def me(user: UserDep) -> dict[str, Any]:
    """The user and, per sync, what they may do (the page disables buttons from this)."""
    syncs = {}
    for sync in catalogue().syncs:
        readable = may(user, sync.dag_id, "read")
        syncs[sync.key] = {"read": readable, "trigger": readable and may(user, sync.dag_id, "trigger"),
                           "unpause": readable and may(user, sync.dag_id, "edit")}
    return {"user": user.get_name(), "ui_base": airflow_runs.ui_base(), "syncs": syncs}


@app.get("/api/syncs")
def overview(user: UserDep) -> dict[str, Any]:
    """One card per sync whose DAG the user may read (403 when there is none)."""
    readable = [s for s in catalogue().syncs if may(user, s.dag_id, "read")]
    if not readable:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "You may not read any Mailchimp DAG.")
    runs: dict[str, list[airflow_runs.RunInfo]] = {}
    with _engine().connect() as conn:
        cards = []
        for sync in readable:
            if sync.dag_id not in runs:
                runs[sync.dag_id] = airflow_runs.recent_runs(sync.dag_id, limit=2 * TREND_RUNS)
            cards.append(card(conn, sync, runs[sync.dag_id], user))
    return {"syncs": cards}


@app.get("/api/syncs/{key}")
def one_card(key: str, user: UserDep) -> dict[str, Any]:
    sync = _sync_or_404(key)
    require(user, sync.dag_id, "read")
    with _engine().connect() as conn:
        return card(conn, sync, airflow_runs.recent_runs(sync.dag_id, limit=2 * TREND_RUNS), user)


@app.get("/api/syncs/{key}/records")
def records(
    key: str,
    user: UserDep,
    tab: queries.Tab = Query("failed"),
    reason: str | None = Query(None, max_length=500),
    cursor: str | None = Query(None, max_length=2000),
    limit: int = Query(50, ge=1, le=queries.MAX_PAGE),
) -> dict[str, Any]:
    """One page of a tab; ``reason`` filters, ``cursor`` is the previous page's ``next_cursor``."""
    sync = _sync_or_404(key)
    require(user, sync.dag_id, "read")
    if sync.entity is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "The engagement pull has no per-record tabs.")
    if tab in queries.MEMBER_STATUS_TABS and sync.kind != "audience":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"The {tab} tab belongs to the audience sync.")
    run_id = None
    if tab in queries.RESULT_TABS:
        run_id = _tab_run(sync, tab)
    cat = catalogue()
    try:
        with _engine().connect() as conn:
            page = queries.records_page(conn, queries.tab_source(cat.forward_tables, tab, sync.entity, run_id),
                                        reason=reason, cursor=cursor, limit=limit)
    except queries.BadCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    if tab not in queries.MEMBER_STATUS_TABS:  # those rows are Mailchimp's members: they carry their email
        emails = queries.record_emails(_engine(), cat.forward_tables, sync.entity, sync.email_source,
                                       [row["record_id"] for row in page.rows])
        for row in page.rows:
            row["email"] = emails.get(row["record_id"]) or row.get("email")
    base = airflow_runs.ui_base()
    for row in page.rows:
        if row.get("run_id") and row.get("task_id"):
            row["log_url"] = airflow_runs.task_log_url(base, row.get("dag_id") or sync.dag_id, row["run_id"],
                                                       row["task_id"], row.get("map_index"))
    return {"sync": sync.key, "tab": tab, "run_id": run_id, "rows": page.rows, "total": page.total,
            "reasons": page.reasons, "next_cursor": page.next_cursor}


@app.post("/api/syncs/{key}/actions/{action}")
def act(key: str, action: str, request: Request, user: UserDep) -> Any:
    """Trigger the run a button stands for, as the signed-in user (403 without the permission;
    409 while the DAG is paused, since such a run would sit queued and never start).

    Only a JSON request is taken (``Content-Type: application/json``, any body): a cross-site form
    cannot send one, and a cross-site script cannot without the browser asking this origin first."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Send the request as application/json.")
    sync = _sync_or_404(key)
    require(user, sync.dag_id, "read")
    if action not in sync.actions:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No action {action!r} on {sync.key!r}; "
                                                       f"known: {', '.join(sync.actions)}.")
    require(user, sync.dag_id, "trigger")
    if airflow_runs.dag_paused(sync.dag_id):
        # A run of a paused DAG is created but never starts: say so instead (the page offers to
        # unpause, through Airflow's own API, when the user may edit the DAG).
        return JSONResponse({
            "detail": f"The DAG {sync.dag_id!r} is paused in Airflow: a run would wait until it is unpaused. "
                      "Unpause it (Airflow's DAG page, or the dashboard's Unpause button), then press the button again.",
            "paused": True, "dag_id": sync.dag_id, "can_unpause": may(user, sync.dag_id, "edit"),
        }, status_code=status.HTTP_409_CONFLICT)
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists

    try:
        run = airflow_runs.trigger(sync.dag_id, sync.run_conf(action), user.get_name())
    except DagNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Airflow does not know the DAG {sync.dag_id!r} yet.") from None
    except DagRunAlreadyExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return {"dag_id": sync.dag_id, "action": action, "run": run.as_dict(sync.dag_id, airflow_runs.ui_base())}


@app.get("/api/campaigns")
def campaign_view(user: UserDep, limit: int = Query(500, ge=1, le=5000)) -> dict[str, Any]:
    """Per campaign: sends, opens, unique opens, clicks, unsubscribes, bounces; and per send day."""
    sync = next(s for s in catalogue().syncs if s.kind == "engagement")
    require(user, sync.dag_id, "read")
    with _engine().connect() as conn:
        items = queries.campaigns(conn, catalogue().engagement_tables, limit=limit)
    return {"campaigns": items, "series": queries.campaign_series(items)}


@app.get("/api/batches/{batch_id}")
def batch_view(user: UserDep, batch_id: str = PathParam(max_length=64)) -> dict[str, Any]:
    """One Mailchimp batch as the ledger and ``sync_result`` know it (read permission on its DAG)."""
    cat = catalogue()
    ledgers = [cat.forward_tables]
    if cat.engagement_tables.batch.fullname != cat.forward_tables.batch.fullname:
        ledgers.append(cat.engagement_tables)
    with _engine().connect() as conn:
        found = queries.find_batch(conn, ledgers, batch_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Batch {batch_id!r} is in no batch ledger the dashboard "
                                f"reads ({', '.join(t.table_name('batch') for t in ledgers)}).")
        require(user, found["dag_id"], "read")
        results = queries.batch_results(conn, cat.forward_tables, batch_id)
    by_entity = {s.entity: s for s in cat.syncs if s.entity}
    for entity in {row["entity"] for row in results["rows"]}:
        sync = by_entity.get(entity)
        rows = [row for row in results["rows"] if row["entity"] == entity]
        emails = queries.record_emails(_engine(), cat.forward_tables, entity, sync.email_source if sync else None,
                                       [row["record_id"] for row in rows])
        for row in rows:
            row["email"] = emails.get(row["record_id"])
    base = airflow_runs.ui_base()
    found["run_url"] = airflow_runs.run_url(base, found["dag_id"], found["run_id"])
    found["log_url"] = airflow_runs.task_log_url(base, found["dag_id"], found["run_id"], found["task_id"],
                                                 found["map_index"])
    return {"batch": found, **results}


# ------------------------------------------------------------------------------------------------
# cards
# ------------------------------------------------------------------------------------------------
def _tab_run(sync: Sync, tab: str) -> str | None:
    """The run a ``sync_result`` tab lists: the newest dry run for *Plan*, else the card's last run."""
    runs = airflow_runs.recent_runs(sync.dag_id, limit=2 * TREND_RUNS)
    with _engine().connect() as conn:
        if tab == "plan":
            candidates = [r for r in runs if r.dry_run and _covers(sync, r)]
        else:
            candidates = [r for r in runs if not r.dry_run and _covers(sync, r)][:TREND_RUNS]
        found = queries.first_run_with_rows(conn, catalogue().forward_tables, sync.entity or "",
                                            [r.run_id for r in candidates])
    return found or (candidates[0].run_id if candidates else None)


def _covers(sync: Sync, run: airflow_runs.RunInfo) -> bool:
    entities = run.entities()
    return sync.kind != "ecommerce" or entities is None or sync.entity in entities


def card(conn: Any, sync: Sync, runs: list[airflow_runs.RunInfo], user: Any) -> dict[str, Any]:
    """One overview card (see the module docstring for what each number counts)."""
    base = airflow_runs.ui_base()
    trigger = may(user, sync.dag_id, "trigger")
    out: dict[str, Any] = {
        "key": sync.key, "title": sync.title, "kind": sync.kind, "dag_id": sync.dag_id, "entity": sync.entity,
        "actions": list(sync.actions), "can_trigger": trigger, "paused": airflow_runs.dag_paused(sync.dag_id),
        "can_unpause": may(user, sync.dag_id, "edit"),
    }
    cat = catalogue()
    if sync.entity is None:
        real = runs[:TREND_RUNS]
        out["last_run"] = real[0].as_dict(sync.dag_id, base) if real else None
        out["counts"] = queries.engagement_counts(conn, cat.engagement_tables)
        out["config_error"] = cat.engagement_config_error
        out["trend"] = [{"run_id": r.run_id, "state": r.state, "run_after": _iso(r.run_after)} for r in reversed(real)]
        return out
    real = [r for r in runs if not r.dry_run and _covers(sync, r)][:TREND_RUNS]
    per_run = queries.outcome_counts(conn, cat.forward_tables, sync.entity, [r.run_id for r in real])
    with_rows = [r for r in real if r.run_id in per_run]
    last = with_rows[0] if with_rows else (real[0] if real else None)
    last_counts = per_run.get(last.run_id, {}) if last else {}
    state = queries.state_counts(conn, cat.forward_tables, sync.entity)
    counts: dict[str, Any] = {
        "synced": sum(last_counts.get("ok", {}).values()),
        "pending": sum(last_counts.get("pending", {}).values()) + state["in_open_batches"],
        "failed": sum(last_counts.get("failed", {}).values()),
        "skipped": sum(last_counts.get("skipped", {}).values()),
        "skipped_by_reason": dict(sorted(last_counts.get("skipped", {}).items(), key=lambda kv: -kv[1])),
        "failed_by_reason": dict(sorted(last_counts.get("failed", {}).items(), key=lambda kv: -kv[1])),
        "quarantined": state["quarantined"],
        "in_open_batches": state["in_open_batches"],
    }
    if sync.kind == "audience":
        counts.update(queries.member_status_counts(conn, cat.forward_tables))  # written by the audit and the pull
    dry = next((r for r in runs if r.dry_run and _covers(sync, r)), None)
    out.update({
        "last_run": last.as_dict(sync.dag_id, base) if last else None,
        "last_dry_run": dry.as_dict(sync.dag_id, base) if dry else None,
        "counts": counts,
        "trend": [
            {"run_id": r.run_id, "state": r.state, "run_after": _iso(r.run_after),
             **{o: sum(per_run.get(r.run_id, {}).get(o, {}).values()) for o in ("ok", "failed", "skipped", "pending")}}
            for r in reversed(with_rows)
        ],
    })
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
