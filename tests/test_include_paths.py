"""Where the DAGs find include/: one rule for the three configs and the SQL folder (README, Set-up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailchimp_provider.config import audience_config_path
from mailchimp_provider.include_paths import IncludeNotFoundError, include_dirs, include_file, sql_dir
from mailchimp_provider.reverse.config import config_path as engagement_config_path
from mailchimp_provider.sync.ecommerce.config import ecommerce_config_path
from mailchimp_provider.warehouse.extract import load_sql

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "audience_sync.yaml": ("MAILCHIMP_AUDIENCE_SYNC_CONFIG", audience_config_path),
    "ecommerce_sync.yaml": ("MAILCHIMP_ECOMMERCE_SYNC_CONFIG", ecommerce_config_path),
    "engagement_pull.yaml": ("MAILCHIMP_ENGAGEMENT_PULL_CONFIG", engagement_config_path),
}


def user_layout(base: Path) -> Path:
    """``<base>/dags`` and ``<base>/include`` (configs and sql/), as the README lays them out."""
    (base / "dags").mkdir(parents=True)
    (base / "include" / "sql").mkdir(parents=True)
    for name in CONFIGS:
        (base / "include" / name).write_text("# the user's copy\n")
    (base / "include" / "sql" / "customers.sql").write_text("SELECT 'mine' AS customer_id;\n")
    return base


@pytest.fixture
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for env, _ in CONFIGS.values():
        monkeypatch.delenv(env, raising=False)
    monkeypatch.delenv("MAILCHIMP_SQL_DIR", raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_include_beside_the_dag_folder_wins_over_the_source_checkout(name: str, no_overrides, tmp_path: Path) -> None:
    home = user_layout(tmp_path / "deploy")
    no_overrides.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(home / "dags"))
    _, resolve = CONFIGS[name]
    assert resolve() == home / "include" / name
    assert sql_dir() == home / "include" / "sql"
    assert load_sql("customers") == "SELECT 'mine' AS customer_id"


def test_airflow_home_include_is_used_when_the_dag_folder_has_none_beside_it(no_overrides, tmp_path: Path) -> None:
    home = user_layout(tmp_path / "home")
    no_overrides.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "elsewhere" / "dags"))
    no_overrides.setenv("AIRFLOW_HOME", str(home))
    assert audience_config_path() == home / "include" / "audience_sync.yaml"
    assert include_dirs()[:2] == [tmp_path / "elsewhere" / "include", home / "include"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_environment_variable_names_each_config_file(name: str, no_overrides, tmp_path: Path) -> None:
    user_layout(tmp_path / "deploy")
    no_overrides.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "deploy" / "dags"))
    env, resolve = CONFIGS[name]
    no_overrides.setenv(env, str(tmp_path / "team-a.yaml"))
    assert resolve() == tmp_path / "team-a.yaml"


def test_mailchimp_sql_dir_names_the_sql_folder(no_overrides, tmp_path: Path) -> None:
    (tmp_path / "views").mkdir()
    (tmp_path / "views" / "customers.sql").write_text("SELECT 'view' AS customer_id")
    no_overrides.setenv("MAILCHIMP_SQL_DIR", str(tmp_path / "views"))
    assert sql_dir() == tmp_path / "views"
    assert load_sql("customers") == "SELECT 'view' AS customer_id"


def test_the_source_checkout_is_the_last_place_searched(no_overrides, tmp_path: Path) -> None:
    no_overrides.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "dags"))
    no_overrides.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert include_dirs()[-1] == ROOT / "include"
    assert ecommerce_config_path() == ROOT / "include" / "ecommerce_sync.yaml"


def test_a_file_found_nowhere_is_an_error_naming_every_path_searched_and_the_override(no_overrides, tmp_path: Path) -> None:
    no_overrides.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "dags"))
    no_overrides.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    with pytest.raises(IncludeNotFoundError) as info:
        include_file("billing_sync.yaml", "MAILCHIMP_BILLING_SYNC_CONFIG")
    message = str(info.value)
    for folder in (tmp_path / "include", tmp_path / "home" / "include", ROOT / "include"):
        assert str(folder / "billing_sync.yaml") in message
    assert "$MAILCHIMP_BILLING_SYNC_CONFIG" in message
