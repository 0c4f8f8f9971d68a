"""The provider is one installable package that Airflow registers, imported under one name only."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_provider_entry_point_declares_the_mailchimp_connection_type() -> None:
    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("mailchimp_provider")]
    info = ep.load()()
    assert info["package-name"] == "airflow-provider-mailchimp"
    assert {"connection-type": "mailchimp", "hook-class-name": "mailchimp_provider.hooks.mailchimp.MailchimpHook"} in [
        {k: c[k] for k in ("connection-type", "hook-class-name")} for c in info["connection-types"]
    ]


def test_airflow_providers_manager_lists_the_mailchimp_hook_with_its_form() -> None:
    code = (
        "from airflow.providers_manager import ProvidersManager as P;"
        "p = P(); h = p.hooks['mailchimp'];"
        "print(h.hook_class_name, h.connection_id_attribute_name);"
        "b = p.field_behaviours.get('mailchimp') or {}; print(sorted(b.get('relabeling', {}).items()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mailchimp_provider.hooks.mailchimp.MailchimpHook mailchimp_conn_id" in out.stdout
    assert "API key" in out.stdout


def test_airflow_plugin_loader_skips_the_package_so_it_is_not_imported_twice() -> None:
    from airflow._shared.module_loading import find_path_from_directory

    scanned = [Path(p) for p in find_path_from_directory(str(ROOT / "plugins"), ".airflowignore", "glob")]
    assert not [p for p in scanned if "mailchimp_provider" in p.parts], scanned


def test_package_is_imported_from_the_plugins_folder_under_one_name() -> None:
    import mailchimp_provider

    assert Path(mailchimp_provider.__file__).resolve().parent == ROOT / "plugins" / "mailchimp_provider"


def test_emulator_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "mailchimp-emulator"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--api-key" in out.stdout and "--state" in out.stdout


README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_states_each_dags_schedule_as_the_dag_declares_it() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in README.splitlines()
            if line.startswith("| `mailchimp_") and line.count("|") == 5}
    assert set(rows) == set(bag.dag_ids)
    for dag_id, stated in rows.items():
        schedule = bag.dags[dag_id].schedule
        if schedule is None:
            assert stated.startswith("none"), (dag_id, stated)
        else:
            assert stated.startswith(f"`{schedule}`"), (dag_id, stated, schedule)


def test_readme_documents_every_include_override_and_the_test_button() -> None:
    from mailchimp_provider import include_paths

    for env in (include_paths.AUDIENCE_CONFIG_ENV, include_paths.ECOMMERCE_CONFIG_ENV,
                include_paths.ENGAGEMENT_CONFIG_ENV, include_paths.SQL_DIR_ENV):
        assert f"`{env}`" in README
    assert "test_connection = Enabled" in README and "`[core]`" in README
