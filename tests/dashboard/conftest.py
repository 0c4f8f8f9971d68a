"""Fixtures for the dashboard specs: the dashboard app behind Airflow's auth manager, tokens for
users of each kind, and a warehouse synced by real ``dag.test()`` runs of the audience DAG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest

from sync.conftest import customer, make_harness  # noqa: F401 - make_harness is a fixture

AUTH_MANAGER = "dashboard.auth_manager.DagScopedAuthManager"
USERS = {"admin": "admin", "viewer": "viewer", "outsider": "viewer"}


@dataclass
class Client:
    """The dashboard mounted at /mailchimp as Airflow mounts it, and a token per user."""

    http: Any
    tokens: dict[str, str]

    def get(self, path: str, user: str | None = "admin", **kwargs: Any) -> Any:
        return self.http.get(path, headers=self._auth(user), **kwargs)

    def post(self, path: str, user: str | None = "admin", **kwargs: Any) -> Any:
        kwargs.setdefault("json", {})
        return self.http.post(path, headers=self._auth(user), **kwargs)

    def _auth(self, user: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}


@pytest.fixture
def client(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from mailchimp_provider.dashboard.app import app as dashboard
    from mailchimp_provider.dashboard.syncs import catalogue

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", AUTH_MANAGER)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in USERS.items()))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "dashboard-tests-secret-" + "x" * 64)
    previous = airflow_app._AuthManagerState.instance
    airflow_app._AuthManagerState.instance = None
    catalogue.cache_clear()  # the harness points the config at this test's file
    root = FastAPI()
    manager = airflow_app.init_auth_manager(root)
    root.mount("/mailchimp", dashboard)
    tokens = {u: manager.generate_jwt(SimpleAuthManagerUser(username=u, role=r)) for u, r in USERS.items()}
    with TestClient(root) as http:
        yield Client(http, tokens)
    airflow_app._AuthManagerState.instance = previous
    catalogue.cache_clear()


@dataclass
class Synced:
    """A warehouse after three runs of the audience DAG and a dry run (see :func:`synced`)."""

    harness: Any
    runs: list[Any]
    dry_run: Any


def bad_and_good_customers() -> list[dict[str, Any]]:
    good = [customer(f"g{i:02d}", f"shopper.{i}@shop-mail.net", minutes=i, marketing_opt_in=True) for i in range(7)]
    return [
        *good,
        customer("fake1", "test@shop-mail.net", minutes=50),  # Mailchimp refuses it: failed
        customer("fake2", "test@other-mail.net", minutes=51),  # ... and this one
        customer("typo", "no-at-sign.example.com", minutes=52),  # our own check: skipped
    ]


@pytest.fixture
def synced(make_harness: Callable[..., Any], warehouse: Any) -> Synced:  # noqa: F811
    """Two real runs (the fake emails fail twice and are quarantined), one more changed row, a dry
    run planning it, and members the engagement pull found archived, cleaned or unsubscribed."""
    h = make_harness(warehouse, sync={"max_attempts": 2, "max_failure_share": 1.0, "min_failures_to_fail": 1})
    h.insert(*bad_and_good_customers())
    runs = [h.run(), h.run()]
    h.update("g01", first_name="Renamed")
    dry = h.run(dry_run=True)
    for email, status in (("gone@shop-mail.net", "archived"), ("bounced@shop-mail.net", "cleaned"),
                          ("left@shop-mail.net", "unsubscribed"), ("left2@shop-mail.net", "unsubscribed")):
        h.add_reverse_pulled_member(email, status)
    return Synced(h, runs, dry)


def set_paused(dag_id: str, paused: bool) -> None:
    """Pause or unpause a DAG in the metadata DB, as Airflow's DAG page does (``dag.test()`` runs
    leave the DAG as Airflow created it: paused, with ``dags_are_paused_at_creation``)."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(sa.update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=paused))


@pytest.fixture
def audience_unpaused(synced: Synced) -> Synced:
    """``synced``, with the audience DAG unpaused (its buttons create runs that start)."""
    set_paused("mailchimp_audience_sync", False)
    return synced
