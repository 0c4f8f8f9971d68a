"""The e-commerce sync config and run parameters: errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailchimp_provider.config import ConfigError
from mailchimp_provider.operators.ecommerce import selected_entities
from mailchimp_provider.sync.ecommerce.config import ENTITIES, load_ecommerce_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ecommerce_sync.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_config_loads_and_shares_the_audience_sync_consent_policy():
    config = load_ecommerce_config()
    assert config.store.id and len(config.store.id) <= 50 and config.store.currency_code == "USD"
    assert config.consent().opt_in_column == "marketing_opt_in"
    assert config.status_maps.financial["canceled"] == "cancelled"


def test_order_status_vocabulary_is_extended_from_the_config(tmp_path: Path):
    config = load_ecommerce_config(write(tmp_path, "store: {id: s, name: S, currency_code: eur}\n"
                                                   "order_status: {financial: {settled: paid}}\n"))
    assert config.status_maps.financial["settled"] == "paid" and config.status_maps.financial["paid"] == "paid"
    assert config.store.body("L1")["currency_code"] == "EUR"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("store: {id: s, name: S, currency_code: XYZ}\n", "store.currency_code"),
        (f"store: {{id: {'s' * 51}, name: S, currency_code: USD}}\n", "store.id"),
        ("store: {id: s, name: S, currency_code: USD, list_id: a, list_name: b}\n", "store.list_id"),
        ("store: {id: s, name: S, currency_code: USD}\nsync: {chunk_sise: 3}\n", "sync.chunk_sise"),
        ("store: {name: S, currency_code: USD}\n", "store.id"),
    ],
)
def test_bad_config_is_an_error_naming_file_and_key(tmp_path: Path, text: str, key: str):
    with pytest.raises(ConfigError) as info:
        load_ecommerce_config(write(tmp_path, text))
    assert key in str(info.value) and "ecommerce_sync.yaml" in str(info.value)


def test_entities_parameter():
    assert selected_entities(None) == ENTITIES and selected_entities([]) == ENTITIES
    assert selected_entities(["order", "customers"]) == ("customer", "order")  # dependency order, plurals accepted
    assert selected_entities("product, promo_rule") == ("product", "promo_rule")
    assert selected_entities(["carts", "order"]) == ("order", "cart")  # carts run last
    with pytest.raises(ValueError, match="unknown e-commerce entity wishlists"):
        selected_entities(["wishlists"])


def test_the_shipped_dag_follows_the_audience_dag_conventions():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "dags" / "mailchimp_ecommerce_sync.py"
    spec = importlib.util.spec_from_file_location("shipped_ecommerce_dag", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    dag = next(v for v in vars(module).values() if getattr(v, "dag_id", None) == "mailchimp_ecommerce_sync")

    assert set(dag.params) == {"full_refresh", "dry_run", "retry_archived", "retry_failed", "allow_mass_delete", "entities"}
    assert [t.task_id for t in dag.topological_sort()] == [
        "prepare_store", "sync_customers", "sync_products", "sync_promo_rules", "sync_promo_codes", "sync_orders",
        "sync_carts", "release_store"]
    assert dag.task_dict["release_store"].is_teardown and dag.task_dict["prepare_store"].is_setup
    for task in dag.tasks:
        assert task.pool == "mailchimp_api" and task.retries == 3
    assert [a.uri for a in dag.task_dict["sync_orders"].outlets] == ["mailchimp://ecommerce/orders"]
