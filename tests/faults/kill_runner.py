"""Run one DAG and SIGKILL the process at a chosen moment (a worker dying).

``kill_at`` (what the tests use) has a fork server (``python kill_runner.py --serve``, one per test
process, Airflow and the provider imported) fork a child that runs ``main(<dag>, <moment>,
<run_after ISO>)``; ``python kill_runner.py <dag> <moment> <run_after ISO>`` runs one directly.
The Airflow metadata DB, the warehouse and the Mailchimp connection come from the environment the
test set. The moment is reached for real (the patched function runs first, then the process
dies), so a death by SIGKILL proves the kill happened where the test says.

Moments: ``after_post`` (Mailchimp accepted the second batch, the ledger only has its intent),
``after_post:<entity>`` (the same for the first batch of that entity's operations, e.g.
``after_post:order``), ``after_submit`` (the batch is on record in the ledger), ``mid_wait``
(first poll of a running batch), ``mid_apply`` (one batch's bookkeeping committed, the batch not
yet marked applied), ``mid_load`` (engagement pull: after the second warehouse merge, inside its
transaction), ``mid_activity`` (engagement pull: the second campaign's activity committed, its
batch not yet marked applied). DAG ``engagement-sharded``: the engagement pull's
``pull_campaigns >> pull_email_activity`` with ``activity.shards`` 3 (the activity task mapped).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
for extra in (ROOT / "plugins", ROOT / "emulator", TESTS, TESTS / "batches", TESTS / "ecommerce", TESTS / "reverse"):
    sys.path.insert(0, str(extra))


def die_after(owner: Any, name: str, nth: int = 1, when: Callable[..., bool] | None = None) -> None:
    """Replace ``owner.name`` so that its ``nth`` call (counting calls ``when(*args)`` accepts)
    completes and then the process is SIGKILLed."""
    original: Callable[..., Any] = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when is not None and not when(*args, **kwargs):
            return result
        calls["n"] += 1
        if calls["n"] == nth:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


def arm(moment: str) -> None:
    from mailchimp_provider.batches.ledger import BatchLedger
    from mailchimp_provider.batches.runner import BatchRunner
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.reverse import audiences
    from mailchimp_provider.sync.engine import SyncEngine

    if moment == "after_post":
        die_after(MailchimpHook, "submit_batch", nth=2)
    elif moment.startswith("after_post:"):
        prefix = moment.split(":", 1)[1] + ":"
        die_after(MailchimpHook, "submit_batch",
                  when=lambda _hook, operations, *a, **k: str(operations[0].get("operation_id")).startswith(prefix))
    elif moment == "after_submit":
        die_after(BatchLedger, "record_submission", nth=2)
    elif moment == "mid_wait":
        die_after(BatchRunner, "refresh", nth=1)
    elif moment == "mid_apply":
        die_after(SyncEngine, "_apply_slice", nth=2)
    elif moment == "mid_load":
        die_after(audiences, "merge_rows", nth=2)
    elif moment == "mid_activity":
        from mailchimp_provider.reverse import activity

        die_after(activity, "_commit_campaign", nth=2)
    else:
        raise SystemExit(f"unknown moment {moment!r}")


def dag_for(name: str) -> tuple[Any, dict[str, Any] | None]:
    if name == "audience":
        from sync.conftest import SyncHarness

        from mailchimp_provider.warehouse.connection import get_engine

        harness = SyncHarness(types.SimpleNamespace(engine=get_engine("warehouse_default")), None,
                              Path(os.environ["MAILCHIMP_AUDIENCE_SYNC_CONFIG"]))
        return harness.load_dag(retries=0), None
    if name == "ecommerce":
        from ecommerce_harness import ENTITY_ORDER, load_test_dag

        dag = load_test_dag()
        for task in dag.tasks:
            task.retries = 0
        return dag, {"full_refresh": False, "dry_run": False, "entities": list(ENTITY_ORDER)}
    if name in ("engagement", "engagement-sharded"):
        from engagement_harness import EngagementHarness

        harness = EngagementHarness(types.SimpleNamespace(engine=None), None)
        if name == "engagement":
            return harness.dag(), None
        from test_activity_shards import activity_dag

        return activity_dag(harness, shards=3), None
    raise SystemExit(f"unknown DAG {name!r}")


def main(name: str, moment: str, run_after: str) -> None:
    when = datetime.fromisoformat(run_after)
    dag, conf = dag_for(name)
    arm(moment)
    dag.test(run_conf=conf, logical_date=when, run_after=when)
    print(f"kill_runner: the run ended without reaching {moment!r}", file=sys.stderr)
    sys.exit(3)


WARM_MODULES = (
    "airflow.sdk", "airflow.models", "airflow.models.dagrun", "airflow.models.serialized_dag",
    "airflow.dag_processing.dagbag", "airflow.sdk.execution_time.task_runner", "airflow.sdk.execution_time.supervisor",
    "airflow.api_fastapi.execution_api.app", "sqlalchemy.dialects.postgresql.psycopg2", "sqlalchemy.dialects.sqlite",
    "mailchimp_provider.operators.audience", "mailchimp_provider.operators.ecommerce",
    "mailchimp_provider.operators.engagement", "mailchimp_provider.triggers.batch",
    "sync.conftest", "ecommerce_harness", "engagement_harness",
)
"""What every child would import again from scratch: imported once, by the fork server."""


def serve() -> None:
    """The fork server: import :data:`WARM_MODULES` once, then for each request line (JSON:
    ``argv``, ``env``, ``log``) fork a child that takes that environment and runs :func:`main`,
    answering ``{"pid"}`` at once and ``{"rc"}`` (negative: killed by that signal) when it ends.
    It never runs a DAG or opens a connection itself, so a child inherits no thread and no lock
    held by one (it checks), unlike a fork of the test process after a ``dag.test()``."""
    import importlib
    import json
    import threading
    import traceback

    out = os.fdopen(os.dup(1), "w")  # the answers; anything printed goes to the server's log
    os.dup2(2, 1)
    for module in WARM_MODULES:
        importlib.import_module(module)
    if threading.active_count() != 1:
        raise SystemExit(f"kill_runner: warm-up started threads {threading.enumerate()}: forking is unsafe")
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: the test's environment, output to the log, then the run
            code = 1
            try:
                os.environ.clear()
                os.environ.update(request["env"])
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                main(*request["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - reported in the log, the exit code says it failed
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()


_server: Any = None


def start_fork_server() -> None:
    """Start this test process's fork server without waiting for it: its imports overlap the test's set-up."""
    _fork_server(wait=False)


def _fork_server(wait: bool = True) -> Any:
    """This test process's fork server, started on first use (a fresh interpreter, never a fork
    of the test process) with the process's Airflow home and metadata DB; ready once it said so."""
    import atexit
    import subprocess
    import tempfile

    global _server
    if _server is None or _server.poll() is not None:
        errors = tempfile.NamedTemporaryFile(prefix="kill-runner-", suffix=".log", delete=False)
        _server = subprocess.Popen([sys.executable, __file__, "--serve"], env=dict(os.environ), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, bufsize=0)
        _server.errors_path = errors.name
        _server.ready = False
        atexit.register(_server.kill)
    if wait and not _server.ready:
        _server.ready = _read_line(_server, 180.0) == "ready"
        assert _server.ready, f"kill_runner: the fork server did not start:\n{Path(_server.errors_path).read_text()[-4000:]}"
    return _server


def _read_line(server: Any, timeout: float) -> str | None:
    """One line from the server, or None after ``timeout`` seconds (unbuffered pipe, so select is exact)."""
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([server.stdout], [], [], left)[0]:
            return None
        chunk = os.read(server.stdout.fileno(), 1)
        if not chunk:
            return data.decode() or None
        data += chunk
    return data.decode().strip()


def kill_at(name: str, moment: str, run_after: datetime, log: Path, timeout: float = 240.0) -> None:
    """Run DAG ``name`` in a child that SIGKILLs itself at ``moment`` (output in ``log``); assert
    it died there. The child is forked from :func:`serve`, which has Airflow, the provider and the
    harnesses imported already: a kill costs the run, not an interpreter start and its imports."""
    import json

    server = _fork_server()
    request = {"argv": [name, moment, run_after.isoformat()], "env": dict(os.environ), "log": str(log)}
    server.stdin.write((json.dumps(request) + "\n").encode())
    server.stdin.flush()
    started = _read_line(server, 30.0)
    assert started, f"kill_runner: no answer from the fork server:\n{Path(server.errors_path).read_text()[-4000:]}"
    pid = json.loads(started)["pid"]
    finished = _read_line(server, timeout)
    if finished is None:
        os.kill(pid, signal.SIGKILL)
        _read_line(server, 30.0)
        raise AssertionError(f"not killed at {moment} within {timeout:.0f} s:\n" + log.read_text()[-4000:])
    rc = json.loads(finished)["rc"]
    assert rc == -signal.SIGKILL, f"not killed at {moment} (rc {rc}):\n" + log.read_text()[-4000:]


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main(*sys.argv[1:4])
