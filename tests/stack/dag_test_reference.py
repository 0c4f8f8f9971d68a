"""The reference side of the stack's equality test: the three shipped DAGs run by ``dag.test()``.

Run as a subprocess (``python tests/stack/dag_test_reference.py SPEC.json``) so its Airflow (a
SQLite metadata DB in its own AIRFLOW_HOME, the DAG bundles, the connections) never meets the
pytest process's. SPEC names the emulator and the warehouse, both fresh, the warehouse already
seeded with the demo data. The steps are the stack test's, in the same order: audience sync,
e-commerce sync, the demo campaign delivered, engagement pull. Prints one JSON line
``{"runs": {dag_id: {"run_id", "state"}}}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
DAG_IDS = ("mailchimp_audience_sync", "mailchimp_ecommerce_sync", "mailchimp_engagement_pull")
API_KEY = "0123456789abcdef0123456789abcdef-us1"


def configure(spec: dict[str, str]) -> None:
    """Airflow reads its configuration at import: everything is set before the first import."""
    home = Path(spec["airflow_home"])
    home.mkdir(parents=True, exist_ok=True)
    emulator = spec["emulator_url"].removeprefix("http://")
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([{
            "name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "dags")}}]),
        "AIRFLOW_CONN_MAILCHIMP_DEFAULT": f"mailchimp://:{quote(API_KEY, safe='')}@{emulator}/3.0",
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT": spec["warehouse_url"].replace("postgresql+psycopg2://", "postgresql://"),
    })
    os.environ.pop("MAILCHIMP_LIMITER_REDIS_URL", None)  # one process: its own cap is the budget
    for extra in (ROOT, ROOT / "plugins", ROOT / "emulator"):
        sys.path.insert(0, str(extra))


def main(spec: dict[str, str]) -> dict[str, dict[str, str]]:
    configure(spec)
    import requests
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    from scripts.demo_steps import send_demo_campaign

    db.initdb()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    missing = [d for d in DAG_IDS if d not in bag.dags]
    if missing:
        raise SystemExit(f"DAGs not found: {missing}; import errors: {bag.import_errors}")
    runs: dict[str, dict[str, str]] = {}
    for dag_id in DAG_IDS:
        if dag_id == "mailchimp_engagement_pull":
            lists = requests.get(f"{spec['emulator_url']}/3.0/lists", auth=("ref", API_KEY), timeout=30).json()["lists"]
            send_demo_campaign(f"{spec['emulator_url']}/3.0", spec["emulator_url"], lists[0]["id"])
        run = bag.dags[dag_id].test()
        runs[dag_id] = {"run_id": run.run_id, "state": str(run.state)}
    return runs


if __name__ == "__main__":
    result = main(json.loads(Path(sys.argv[1]).read_text()))
    print(json.dumps({"runs": result}), flush=True)
