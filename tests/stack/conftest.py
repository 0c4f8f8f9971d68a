"""One production-shaped stack (scripts/stack.py) per test session, shared by tests/stack.

Every test here carries the ``stack`` marker. ``make test`` runs ``pytest -n 2 --dist loadgroup``
and ``xdist_scope.py`` sends every test of this folder to one xdist worker, so the stack boots once.
The test stack lives in a temporary directory with database names, ports and a Celery queue of
its own (named after the test run), so it never touches a stack ``make stack`` started. Outside CI the tests skip, with
a message, when Redis, PostgreSQL or Chromium is missing; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench_stack_fanout import CONFIG_DIR_ENV, FANOUT_DAGS, write_fanout_configs  # noqa: E402
from scripts.stack import Stack, StackConfig, down, free_port, redis_ping, up  # noqa: E402

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_BASE = "redis://127.0.0.1:6379"
CHROMIUM = "/usr/bin/chromium"


@pytest.hookimpl(tryfirst=True)  # before xdist's hook reads the xdist_group markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.stack)
            item.add_marker(pytest.mark.xdist_group("stack"))
            # The first test also boots the stack; on a loaded 2-core CI machine runs take minutes.
            item.add_marker(pytest.mark.timeout(900))


def require(ok: bool, what: str, how: str) -> None:
    """Skip (fail in CI) when a service the stack needs is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI ({how})", pytrace=False)
    pytest.skip(f"{what} missing: {how}; with CI=true these tests fail instead of skipping")


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis database of this test session's own (the machine's Redis, as in production)."""
    url = f"{REDIS_BASE}/{14 - _worker_index() % 8}"
    require(redis_ping(url), "Redis at 127.0.0.1:6379", "`.ci/run` starts it; or redis-server --daemonize yes")
    return url


def session_tag() -> str:
    """Unique to this test run (several people may run the suite on one machine at once)."""
    return (os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex)[:10]


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack, booted once (about a minute) and stopped, databases dropped, at the end."""
    try:
        sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres").connect().close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        require(False, "PostgreSQL at 127.0.0.1:5432", f"{type(exc).__name__}; `.ci/run` starts it")
    home = tmp_path_factory.mktemp("stack")
    # The fan-out DAGs (test_stack_fanout.py): one unsharded task polling, two mapped shards deferring,
    # each into tables of its own.
    write_fanout_configs(home / "fanout", [1], own_tables=True)
    write_fanout_configs(home / "fanout", [2], own_tables=True, deferrable=True, poll=1.0)
    config = StackConfig(
        home=home, name=f"mc_stacktest_{session_tag()}", redis_url=redis_url,
        api_port=free_port(), emulator_port=free_port(),  # never 8080/8765: a `make stack` may want them
        worker_concurrency=2, extra_dag_folders=[HERE / "dags", FANOUT_DAGS],
        extra_env={CONFIG_DIR_ENV: str(home / "fanout")},
    )
    try:
        started = up(config, quiet=True)
    except SystemExit as exc:
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in (home / "logs").glob("*.log"))
        down(home, keep_databases=False, quiet=True)
        pytest.fail(f"the stack did not start: {exc}\n{logs}", pytrace=False)
    yield started
    down(home, keep_databases=False, quiet=True)


@pytest.fixture
def audience_run(stack: Stack) -> str:
    """The latest successful run of the shipped audience sync (the audience and the tables exist
    after it); xdist may run the group's tests in any order, so whoever needs one asks for it.
    Looked up per test: the equality test starts the emulator and the warehouse afresh, and the
    runs before it then have no rows left."""
    from airflow_api import AirflowApi

    api = AirflowApi(stack)
    runs = api.call("GET", "/dags/mailchimp_audience_sync/dagRuns",
                    params={"state": "success", "order_by": "-run_after", "limit": 1})["dag_runs"]
    if runs:
        return runs[0]["dag_run_id"]
    run_id = api.trigger("mailchimp_audience_sync")
    assert api.wait_run("mailchimp_audience_sync", run_id) == "success", api.task_states("mailchimp_audience_sync", run_id)
    return run_id


@pytest.fixture(scope="session")
def chromium() -> str:
    require(shutil.which(CHROMIUM) is not None, "Debian's chromium", "apt-get install chromium (`.ci/run` does)")
    return CHROMIUM
