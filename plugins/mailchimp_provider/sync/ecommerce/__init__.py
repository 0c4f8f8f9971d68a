"""E-commerce sync: the store, its customers, products, promos and orders, one module per concern.

=============  ============================================================================
module         holds
=============  ============================================================================
config         ``include/ecommerce_sync.yaml`` as a typed ``EcommerceSyncConfig``
payloads       pure payload builders and validators (``RejectedRecord`` names the field)
source         the streamed merge join of records and their child rows
store          the store: create, update, sync flag
rules          what every entity shares: create/update/heal, source hash, deletions, lookups
customers      customers (consent, erasure, audience audit)
products       products with their variants
promos         promo rules and codes
orders         orders with lines and promos
carts          carts with lines (optional tables; bought carts deleted)
engine         ``EcommerceSyncEngine`` and ``RULES`` (the entity rules by name)
report         per-entity run counts
=============  ============================================================================

The names below are imported lazily: the DAG file reads only the config when it is parsed, and
must not pay for SQLAlchemy and the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ENTITIES": "config",
    "EcommerceSyncConfig": "config",
    "ecommerce_config_path": "config",
    "load_ecommerce_config": "config",
    "RejectedRecord": "payloads",
    "prepare_store": "store",
    "release_store": "store",
    "store_path": "store",
    "CommerceScope": "rules",
    "CommerceRules": "rules",
    "RULES": "engine",
    "EcommerceSyncEngine": "engine",
    "ecommerce_run_counts": "report",
    "format_run_counts": "report",
    "run_counts": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
