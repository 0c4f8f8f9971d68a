"""docker-compose.yaml cannot be booted here (Docker images cannot be pulled), so check everything
that can be checked without it: it parses, every host path it mounts or builds from exists, every
command it names exists in the installed Airflow and in this project, and it has the shape of the
stack that is booted and tested (`make stack`, tests/stack)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import sys

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_has_the_official_airflow_3_services_plus_warehouse_and_emulator() -> None:
    expected = {
        "postgres",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-init",
        "warehouse",
        "mailchimp-emulator",
        "redis",
        "airflow-worker-1",
        "airflow-worker-2",
    }
    assert expected <= set(SERVICES)


def test_it_mirrors_make_stack_celery_with_redis_two_workers_deferrable_and_one_connection_budget() -> None:
    from scripts.stack import WORKERS, service_commands, StackConfig

    env = SERVICES["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:airflow@postgres/")
    assert env["MAILCHIMP_LIMITER_REDIS_URL"].startswith("redis://redis:6379/")
    assert env["AIRFLOW__CELERY__BROKER_URL"] != env["MAILCHIMP_LIMITER_REDIS_URL"], "leases apart from the queue"
    assert env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "true"
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
    for worker in ("airflow-worker-1", "airflow-worker-2"):
        assert SERVICES[worker]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert SERVICES[worker]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "--max-concurrent" in SERVICES["mailchimp-emulator"]["command"]
    # The same services as the stack the tests boot, worker for worker.
    stack_services = set(service_commands(StackConfig(), 8080, 8765))
    assert {f"airflow-{name}" for name in WORKERS} <= set(SERVICES)
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "emulator"} <= stack_services


def test_the_workers_run_an_installed_celery_worker_command_with_its_options() -> None:
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    for worker in ("airflow-worker-1", "airflow-worker-2"):
        argv = SERVICES[worker]["command"].split()
        args = parser.parse_args(argv)  # exits (fails the test) on an unknown command or option
        assert args.skip_serve_logs, f"{worker}: two workers in one network namespace cannot both serve logs"


def test_airflow_uid_is_documented_and_used() -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    assert "AIRFLOW_UID=$(id -u)" in text
    assert SERVICES["airflow-scheduler"]["user"] == "${AIRFLOW_UID:-50000}:0"
    readme = (ROOT / "README.md").read_text()
    assert "AIRFLOW_UID" in readme
    assert "has not been booted" in readme.lower()


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_host_path_exists(service: str) -> None:
    for volume in SERVICES[service].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith((".", "/")):
            assert (ROOT / source).exists(), f"{service} mounts {source}, which does not exist"
        else:
            assert source in COMPOSE.get("volumes", {}), f"{service} uses undeclared named volume {source}"


def test_dags_plugins_include_are_mounted_where_airflow_looks() -> None:
    mounts = {v.split(":")[1] for v in SERVICES["airflow-scheduler"]["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts


def test_build_context_and_dockerfile_copy_sources_exist() -> None:
    for name, service in SERVICES.items():
        build = service.get("build")
        if not build:
            continue
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY"):
                sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
                for src in sources:
                    assert (ROOT / build["context"] / src).exists(), f"Dockerfile copies missing {src}"


def _airflow_subcommands() -> dict[str, set[str]]:
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    commands: dict[str, set[str]] = {}
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - argparse has no public API for this
        for name, sub in action.choices.items():
            subs: set[str] = set()
            if sub._subparsers is not None:  # noqa: SLF001
                for sub_action in sub._subparsers._group_actions:  # noqa: SLF001
                    subs |= set(getattr(sub_action, "choices", {}) or {})
            commands[name] = subs
    return commands


def test_every_airflow_command_named_exists() -> None:
    commands = _airflow_subcommands()
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert SERVICES[name]["command"] in commands, f"{name}: `airflow {SERVICES[name]['command']}` unknown"
    init_script = SERVICES["airflow-init"]["command"][1]
    for top, sub in re.findall(r"airflow (\w[\w-]*) (\w[\w-]*)", init_script):
        if top == "users":  # provided by the FAB provider, which the official image ships
            continue
        assert top in commands and sub in commands[top], f"airflow-init runs unknown `airflow {top} {sub}`"
    for service in ("airflow-dag-processor", "airflow-triggerer"):
        check = SERVICES[service]["healthcheck"]["test"][1]
        assert re.search(r"airflow jobs check --job-type (DagProcessorJob|TriggererJob)", check)
        assert "check" in commands["jobs"]


def test_the_emulator_service_runs_the_installed_console_script() -> None:
    assert SERVICES["mailchimp-emulator"]["entrypoint"] == ["mailchimp-emulator"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'mailchimp-emulator = "mailchimp_emulator.cli:main"' in pyproject
    assert shutil.which("mailchimp-emulator") or (ROOT / ".venv/bin/mailchimp-emulator").exists()


def test_airflow_reaches_the_emulator_on_loopback_as_the_hook_requires() -> None:
    conn = SERVICES["airflow-scheduler"]["environment"]["AIRFLOW_CONN_MAILCHIMP_DEFAULT"]
    assert "127.0.0.1%3A8765" in conn
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-triggerer", "airflow-dag-processor"):
        assert SERVICES[name]["network_mode"] == "service:mailchimp-emulator"


def _context_files() -> list[Path]:
    """The files `docker build .` would send, by .dockerignore (its directory and glob patterns)."""
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(rel: Path) -> bool:
        parts = rel.parts
        for pattern in patterns:
            bare = pattern.removeprefix("**/")
            if pattern.startswith("**/"):
                if any(Path(p).match(bare) for p in parts):
                    return True
            elif parts and (Path(parts[0]).match(pattern) or rel.match(pattern)):
                return True
        return False

    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not ignored(rel):
            out.append(path)
    return out


def test_build_context_leaves_out_the_venv_and_local_state_but_keeps_what_the_dockerfile_copies() -> None:
    files = _context_files()
    rels = {f.relative_to(ROOT).parts[0] for f in files}
    assert not rels & {".git", ".venv", ".uv-bootstrap", ".demo", ".bench", "logs"}
    assert {"pyproject.toml", "README.md", "plugins", "emulator"} <= rels
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    assert size_mb < 20, f"build context is {size_mb:.0f} MB"
