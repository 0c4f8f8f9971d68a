"""mailchimp_ecommerce_sync: warehouse commerce data -> a Mailchimp E-commerce store.

See ``doc_md`` below (shown in the Airflow UI) for what it does and how to run it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, dag

from mailchimp_provider.dag_defaults import POOL, POOL_COMMAND, default_args
from mailchimp_provider.operators.ecommerce import PLURAL, ecommerce_sync_params, ecommerce_sync_tasks
from mailchimp_provider.sync.ecommerce.config import ENTITIES, ecommerce_config_path, load_ecommerce_config


# Parsed and validated here, so a broken config is a DAG import error naming the file and key.
# $MAILCHIMP_ECOMMERCE_SYNC_CONFIG points at another file (default include/ecommerce_sync.yaml).
CONFIG_PATH = ecommerce_config_path()
CONFIG = load_ecommerce_config(CONFIG_PATH)

ASSETS = {
    entity: Asset(
        name=f"mailchimp_ecommerce_{PLURAL[entity]}",
        uri=f"mailchimp://ecommerce/{PLURAL[entity]}",
        extra={"config": CONFIG_PATH.name, "store_id": CONFIG.store.id},
    )
    for entity in ENTITIES
}

DOC = f"""
### Mailchimp e-commerce sync

Syncs the warehouse's commerce tables (`include/sql/*.sql`, connection `{CONFIG.warehouse_conn_id}`)
into the Mailchimp E-commerce store `{CONFIG.store.id}` (connection `{CONFIG.mailchimp_conn_id}`),
so marketers can segment by purchases and send product recommendations.

* **Store** ensured from `include/ecommerce_sync.yaml` (or `$MAILCHIMP_ECOMMERCE_SYNC_CONFIG`) (id, name, currency, domain, audience). On
  the first run into the store and on a full refresh it is flagged `is_syncing` (Mailchimp then
  fires no automations on history); the `release_store` teardown clears the flag, also when the
  run fails.
* **Dependency order:** customers -> products (with all variants) -> promo rules -> promo codes ->
  orders (with lines and promos) -> carts (optional tables `carts`/`cart_lines`, for abandoned-cart
  emails). An order or cart whose customer or product has not reached Mailchimp is skipped with
  that reason and goes out in the first run after its dependency has. A cart that became an order
  (its row removed, or `orders.cart_id`) is deleted in Mailchimp.
* **Deletions** (`on_delete` in the config): records whose row left the source query are deleted
  in Mailchimp (products, promo rules and codes, carts by default; customers and orders are kept).
  A run deletes at most `mass_delete.max_share` of an entity unless `allow_mass_delete` is set;
  a dry run lists the deletes.
* **Create vs update** from `mailchimp_sync_state`: customers PUT; products, promo rules, codes and
  orders POST when new and PATCH when changed. "Already exists" on a POST is healed into a PATCH
  in the same run (and 404 on a PATCH into a POST), at most once: never a loop.
* **Only changes are sent** (payload hash); an order is never sent twice, a status change, refund
  or cancellation is one PATCH. Pending and cancelled orders are sent with those statuses, so
  they never count as revenue.
* **Consent** as in the audience sync: `opt_in_status` from `marketing_opt_in` for new customers,
  an existing member's status is never changed, `no_marketing` customers are never sent.
* **Bad rows** (negative quantity, unknown currency, promo amount out of range, ids over 50
  characters, missing required fields) are skipped before any request with a reason naming the
  field (`mailchimp_sync_result.reason` / `error_detail`); the rest of the run goes on.
* **Dry run** (`dry_run`): the plan is recorded with `outcome = 'planned'`; nothing is sent.
  `entities` limits the run to some entities (default: all).
* Each task's log ends with a summary table; `release_store` logs the per-entity counts of the
  run. A task fails when more than {CONFIG.sync.max_failure_share:.0%} of its writes failed.
* Safe to retry or clear at any point: batches already submitted are re-attached, not resent.

Needs the pool `{POOL}` (slots x the hook's `max_in_flight` <= 10): `{POOL_COMMAND}`.
"""


@dag(
    dag_id="mailchimp_ecommerce_sync",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["mailchimp", "forward-sync", "ecommerce"],
    params=ecommerce_sync_params(),
    default_args=default_args(),
)
def mailchimp_ecommerce_sync() -> None:
    ecommerce_sync_tasks(CONFIG_PATH, outlets={entity: [asset] for entity, asset in ASSETS.items()})


dag = mailchimp_ecommerce_sync()
