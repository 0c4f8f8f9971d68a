"""The README's demo: a SQLite warehouse with realistic data (bad rows included), the Mailchimp
emulator, and the project's DAGs run by Airflow (``airflow dags test``), then a report.

Everything lives under ``.demo/`` (AIRFLOW_HOME, the warehouse file, the emulator state); each run
starts from scratch so the output is reproducible.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BIN = Path(sys.executable).parent
API_KEY = "0123456789abcdef0123456789abcdef-us1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(BIN / "mailchimp-emulator"), "--host", "127.0.0.1", "--port", str(port), "--state", str(DEMO / "emulator-state.json")],
        stdout=subprocess.DEVNULL,
        stderr=(DEMO / "emulator.log").open("wb"),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/3.0/ping", auth=("demo", API_KEY), timeout=1)
            return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the emulator did not start; see .demo/emulator.log")


def airflow_env(port: int, warehouse: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(DEMO / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_MAILCHIMP_DEFAULT": f"mailchimp://:{quote(API_KEY, safe='')}@127.0.0.1:{port}/3.0",
            "AIRFLOW_CONN_WAREHOUSE_DEFAULT": f"sqlite:///{warehouse}",
        }
    )
    return env


def airflow(env: dict[str, str], *args: str, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True)
    log = DEMO / "airflow.log"
    with log.open("a") as fh:
        fh.write(f"\n$ airflow {' '.join(args)}\n{out.stdout}\n{out.stderr}\n")
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-4000:], sep="\n")
        raise SystemExit(f"`airflow {' '.join(args)}` failed; full output in {log}")
    if not quiet:
        print(out.stdout)
    return out


def main() -> None:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    port = free_port()
    banner(f"Starting the Mailchimp emulator on 127.0.0.1:{port}")
    emulator = start_emulator(port)
    try:
        print(requests.get(f"http://127.0.0.1:{port}/3.0/ping", auth=("demo", API_KEY), timeout=5).json())
        from scripts.demo_steps import run_demo

        run_demo(port=port, demo_dir=DEMO, env=airflow_env(port, DEMO / "warehouse.db"), airflow=airflow, banner=banner)
        banner("The sync dashboard")
        print("In the Airflow UI, menu 'Mailchimp': http://127.0.0.1:8080/plugin/mailchimp (the page alone:\n"
              "http://127.0.0.1:8080/mailchimp/). `make stack` starts that Airflow with the demo data and prints\n"
              "its login; trigger the DAGs there (or press the dashboard's buttons) and the cards fill in.")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
