"""Run one DAG and SIGKILL the process at a chosen moment (a worker dying).

``kill_at`` (what the tests use) runs ``python kill_runner.py <dag> <moment> <run_after ISO>``;
the Airflow metadata DB, the warehouse and the Mailchimp connection come from the environment the
test set. The moment is reached for real (the patched function runs first, then the process
dies), so a death by SIGKILL proves the kill happened where the test says.

Moments: ``after_post`` (Mailchimp accepted the second batch, the ledger only has its intent),
``after_post:<entity>`` (the same for the first batch of that entity's operations, e.g.
``after_post:order``), ``after_submit`` (the batch is on record in the ledger), ``mid_wait``
(first poll of a running batch), ``mid_apply`` (one batch's bookkeeping committed, the batch not
yet marked applied), ``mid_load`` (engagement pull: after the second warehouse merge, inside its
transaction).
"""

from __future__ import annotations

import os
import signal
import sys
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
    if name == "engagement":
        from engagement_harness import EngagementHarness

        harness = EngagementHarness(types.SimpleNamespace(engine=None), None)
        return harness.dag(), None
    raise SystemExit(f"unknown DAG {name!r}")


def main(name: str, moment: str, run_after: str) -> None:
    when = datetime.fromisoformat(run_after)
    dag, conf = dag_for(name)
    arm(moment)
    dag.test(run_conf=conf, logical_date=when, run_after=when)
    print(f"kill_runner: the run ended without reaching {moment!r}", file=sys.stderr)
    sys.exit(3)


def kill_at(name: str, moment: str, run_after: datetime, log: Path, timeout: float = 240.0) -> None:
    """Run DAG ``name`` in a child interpreter that SIGKILLs itself at ``moment`` (output in
    ``log``); assert it died there. A fresh interpreter, not a fork of the test process: a fork
    inherits the locks of the threads an earlier ``dag.test()`` left behind, held, and hangs."""
    import subprocess

    from mailchimp_provider.warehouse.connection import dispose_engines

    dispose_engines()  # no pooled connection shared with the child
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, __file__, name, moment, run_after.isoformat()],
                              env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, f"not killed at {moment} (rc {proc.returncode}):\n" + log.read_text()[-4000:]


if __name__ == "__main__":
    main(*sys.argv[1:4])
