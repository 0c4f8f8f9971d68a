"""Shared fixtures: a live emulator, an isolated Airflow home, and SQLite/PostgreSQL warehouses.

PostgreSQL tests carry the ``postgres`` marker. Outside CI they skip, with a message, when
127.0.0.1:5432 is unreachable; with ``CI=true`` they fail instead (a skipped PostgreSQL test in CI
would hide a broken production target).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Airflow reads its configuration at import time: isolate it before anything imports airflow.
# Each process gets its own AIRFLOW_HOME and metadata DB: pytest-xdist workers inherit the
# controller's environment, so nothing here may be a setdefault that a worker would share.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mc-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
# dag.test() only runs DAGs it finds in a bundle: the shipped dags/ plus DAGs written for tests.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": str(path)}}
        for name, path in (("dags-folder", ROOT / "dags"), ("test-dags", ROOT / "tests" / "dags"))
    ]
)
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")

for extra in (ROOT / "plugins", ROOT / "emulator", ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

pytest_plugins = ["fixtures.emulator", "fixtures.warehouse", "fixtures.airflow", "fixtures.contract_warehouse"]

# `make test` runs `-n 2 --dist loadgroup`: the stack tests go to one worker (see the module).
from stack.xdist_scope import pytest_xdist_make_scheduler  # noqa: E402,F401
