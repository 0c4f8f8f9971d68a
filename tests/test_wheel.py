"""A user's install, exactly as the README's set-up describes it: the wheel in a fresh venv with the
pinned Airflow, ``dags/`` and ``include/`` copied into a fresh ``AIRFLOW_HOME``. Every DAG imports,
and ``airflow dags test mailchimp_audience_sync`` syncs a warehouse into the emulator.

Nothing here runs from the source checkout: the package comes from the wheel, Airflow's settings
are its defaults (no DAG or plugin folder pointed at the repository), and ``include/`` is found by
the documented rule alone.

Cost is kept low for CI: the wheel is cached under a hash of the packaged sources, the migrated
Airflow metadata database under a hash of requirements.txt, and the venv is built with ``uv`` from
its cache (``--compile-bytecode``, so Airflow does not compile on import).
The cache folder is ``$MAILCHIMP_TEST_CACHE``, default ``~/.cache/airflow-provider-mailchimp-tests``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ("pyproject.toml", "README.md", "plugins", "emulator")
"""What setuptools reads to build the wheel (pyproject.toml's packages.find and readme)."""
SKIPPED = ("__pycache__", "*.pyc", "*.egg-info", "build", ".airflowignore~")
DAG_IDS = ["mailchimp_audience_sync", "mailchimp_ecommerce_sync", "mailchimp_engagement_pull"]
CACHE = Path(os.environ.get("MAILCHIMP_TEST_CACHE") or Path.home() / ".cache" / "airflow-provider-mailchimp-tests")


def uv_binary() -> str:
    """The uv that ``make setup`` uses: the bootstrap copy, else the one on PATH."""
    bootstrap = ROOT / ".uv-bootstrap" / "bin" / "uv"
    found = str(bootstrap) if bootstrap.is_file() else shutil.which("uv")
    if not found:
        pytest.fail("uv is needed to build the wheel and its venv; `make setup` installs it into .uv-bootstrap/")
    return found


def run(args: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with the command and the end of its output."""
    out = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        pytest.fail(f"`{' '.join(map(str, args))}` exited {out.returncode}:\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}")
    return out


def json_output(out: subprocess.CompletedProcess[str]) -> list[dict]:
    """The JSON list an ``--output json`` command printed (Airflow logs warnings to stdout too)."""
    lines = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert lines, f"no JSON list in the output:\n{out.stdout[-3000:]}"
    return json.loads(lines[-1])


def sources_hash() -> str:
    """A hash of every file that goes into the wheel (path and content)."""
    digest = hashlib.sha256()
    for top in PACKAGED:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(p.match(pattern) or pattern in p.parts for pattern in SKIPPED)
        )
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def built_wheel(uv: str, scratch: Path) -> Path:
    """The project's wheel, built from a clean copy of its sources (cached by their hash)."""
    target = CACHE / "wheels" / sources_hash()
    wheels = sorted(target.glob("*.whl"))
    if wheels:
        return wheels[0]
    source = scratch / "source"
    for top in PACKAGED:
        if (ROOT / top).is_file():
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / top, source / top)
        else:  # a copy, so no build/ or egg-info/ lands in the checkout and nothing stale gets in
            shutil.copytree(ROOT / top, source / top, ignore=shutil.ignore_patterns(*SKIPPED))
    staging = CACHE / "wheels" / f"{target.name}.{os.getpid()}"
    run([uv, "build", "-q", "--wheel", "-o", staging, source])
    try:
        staging.rename(target)
    except OSError:  # another process cached the same sources meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(target.glob("*.whl"))[0]


@dataclass(frozen=True)
class UserInstall:
    """A venv with the wheel and an Airflow home laid out as the README says."""

    venv: Path
    home: Path
    warehouse: Path

    def env(self, mailchimp_uri: str = "") -> dict[str, str]:
        """Airflow's defaults in a clean environment: nothing from the test process or the checkout."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW", "MAILCHIMP_")) and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        keep.update({
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_WAREHOUSE_DEFAULT": f"sqlite:///{self.warehouse}",
        })
        if mailchimp_uri:
            keep["AIRFLOW_CONN_MAILCHIMP_DEFAULT"] = mailchimp_uri
        return keep

    def airflow(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.venv / "bin" / "airflow", *args], env=env or self.env(), cwd=self.home, check=check)


def migrated_db(install: UserInstall) -> None:
    """``airflow db migrate`` into the home, from a cached migrated database when the pinned
    requirements (so the Airflow version) are the ones it was migrated with."""
    key = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()[:20]
    cached = CACHE / "airflow-db" / key / "airflow.db"
    if not cached.is_file():
        install.airflow("db", "migrate")
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = cached.with_name(f"airflow.db.{os.getpid()}")
        shutil.copy2(install.home / "airflow.db", staging)
        staging.replace(cached)
    else:
        shutil.copy2(cached, install.home / "airflow.db")


@pytest.fixture(scope="module")
def user_install(tmp_path_factory: pytest.TempPathFactory) -> UserInstall:
    uv = uv_binary()
    scratch = tmp_path_factory.mktemp("wheel")
    wheel = built_wheel(uv, scratch)
    venv = scratch / "venv"
    uv_env = {**os.environ, "UV_SYSTEM_CERTS": os.environ.get("UV_SYSTEM_CERTS", "1")}
    run([uv, "venv", "-q", "--python", sys.executable, venv], env=uv_env)
    python = venv / "bin" / "python"
    run([uv, "pip", "install", "-q", "--compile-bytecode", "--python", python, "-r", ROOT / "requirements.txt"], env=uv_env)
    run([uv, "pip", "install", "-q", "--compile-bytecode", "--python", python, "--no-deps", wheel], env=uv_env)

    # The README: "Copy dags/ and include/ into $AIRFLOW_HOME" (dags/ is Airflow's default DAG folder).
    home = scratch / "airflow-home"
    shutil.copytree(ROOT / "dags", home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "include", home / "include")
    install = UserInstall(venv=venv, home=home, warehouse=scratch / "warehouse.db")
    migrated_db(install)
    install.airflow("pools", "set", "mailchimp_api", "1", "Mailchimp API: <= 10 connections per key")
    return install


def test_the_package_is_imported_from_the_wheel_not_the_checkout(user_install: UserInstall) -> None:
    out = run([user_install.venv / "bin" / "python", "-c", "import mailchimp_provider; print(mailchimp_provider.__file__)"],
              env=user_install.env(), cwd=user_install.home)
    assert str(user_install.venv) in out.stdout and str(ROOT) not in out.stdout


def test_every_dag_imports_without_errors(user_install: UserInstall) -> None:
    errors = user_install.airflow("dags", "list-import-errors", "--local", "--output", "json")
    listed = user_install.airflow("dags", "list", "--local", "--output", "json")
    assert json_output(errors) == []
    assert sorted(d["dag_id"] for d in json_output(listed)) == DAG_IDS


def test_a_missing_include_folder_is_an_import_error_naming_the_paths_searched(user_install: UserInstall,
                                                                                tmp_path: Path) -> None:
    home = tmp_path / "home-without-include"
    shutil.copytree(user_install.home / "dags", home / "dags")
    env = {**user_install.env(), "AIRFLOW_HOME": str(home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{user_install.home / 'airflow.db'}"}
    out = user_install.airflow("dags", "list-import-errors", "--local", "--output", "json", env=env, check=False)
    assert out.returncode == 1  # Airflow's exit status when there are import errors
    errors = {Path(e["filepath"]).name: e["error"] for e in json_output(out)}
    assert sorted(errors) == sorted(f"{dag_id}.py" for dag_id in DAG_IDS)
    assert f"{home / 'include' / 'audience_sync.yaml'}" in errors["mailchimp_audience_sync.py"]
    assert "MAILCHIMP_ECOMMERCE_SYNC_CONFIG" in errors["mailchimp_ecommerce_sync.py"]


def test_airflow_dags_test_syncs_the_demo_warehouse_into_the_emulator(user_install: UserInstall, emulator) -> None:
    from mailchimp_provider.demo.data import seed_demo_warehouse

    engine = sa.create_engine(f"sqlite:///{user_install.warehouse}")
    seeded = seed_demo_warehouse(engine)
    uri = f"mailchimp://:{quote(emulator.api_key, safe='')}@{emulator.host}:{emulator.port}/3.0"  # as in the README

    user_install.airflow("dags", "test", "mailchimp_audience_sync", env=user_install.env(uri))

    metadata = sa.create_engine(f"sqlite:///{user_install.home / 'airflow.db'}")
    with metadata.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id, state FROM dag_run WHERE dag_id = 'mailchimp_audience_sync'")).all()
    assert [state for _, state in runs] == ["success"]
    with engine.connect() as conn:
        sent = dict(conn.execute(sa.text(
            "SELECT operation, COUNT(*) FROM mailchimp_sync_result WHERE run_id = :run AND outcome = 'ok' "
            "GROUP BY operation"), {"run": runs[0][0]}).all())
    (audience,) = emulator.api("GET", "/lists").json()["lists"]
    members = emulator.api("GET", f"/lists/{audience['id']}/members", params={"count": 1}).json()["total_items"]
    assert members > seeded["customers"] // 2
    assert members == sent["upsert"], sent
