"""docker-compose.yaml cannot be run here (no Docker engine), so check everything that can be
checked without one: it parses, every host path it mounts or builds from exists, and every command
it names exists in the installed Airflow and in this project."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
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
    }
    assert expected <= set(SERVICES)


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
