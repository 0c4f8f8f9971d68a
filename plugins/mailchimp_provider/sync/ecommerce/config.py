"""``include/ecommerce_sync.yaml`` as a typed, validated ``EcommerceSyncConfig``.

Parsed with the project's typed YAML loader (``mailchimp_provider.config``): unknown keys are
errors with a "did you mean" hint, and every problem names the file and the key. The store block
is checked here, before any request: an unknown currency or an id over 50 characters would
otherwise fail the first request of every run.

The e-commerce sync shares two things with the audience sync, read from the audience config
(``audience_config``): the audience the store belongs to (unless ``store.list_id``/``list_name``
overrides it) and the consent policy (which column means opt-in, no-marketing, guest; double
opt-in).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mailchimp_provider.config import (
    AudienceSyncConfig,
    ConsentSpec,
    MassDeleteSpec,
    SyncTuning,
    load_audience_config,
    load_config,
)
from mailchimp_provider.include_paths import ECOMMERCE_CONFIG_ENV, include_file
from mailchimp_provider.sync.ecommerce.payloads import ISO_4217, MAX_ID, StatusMaps, compact


def ecommerce_config_path() -> Path:
    """``$MAILCHIMP_ECOMMERCE_SYNC_CONFIG`` when set, else ``include/ecommerce_sync.yaml`` found by
    the rule of :mod:`mailchimp_provider.include_paths` (raises naming the paths searched)."""
    return include_file("ecommerce_sync.yaml", ECOMMERCE_CONFIG_ENV)


# Dependency order of every run (issue #5): an entity is only sent after the ones before it.
# Carts (optional source tables) come last: they need their customer and products, and an order
# read in the same run tells which carts were bought.
ENTITIES: tuple[str, ...] = ("customer", "product", "promo_rule", "promo_code", "order", "cart")

OnDelete = Literal["ignore", "delete"]


@dataclass(frozen=True)
class StoreSpec:
    """The Mailchimp E-commerce store the warehouse is synced into."""

    id: str
    name: str
    currency_code: str
    list_id: str | None = None
    """The audience the store belongs to; default: the audience sync's audience."""
    list_name: str | None = None
    domain: str | None = None
    platform: str | None = "Apache Airflow"
    email_address: str | None = None
    money_format: str | None = None
    primary_locale: str | None = None
    timezone: str | None = None
    phone: str | None = None

    def validate(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not self.id.strip():
            problems.append(("id", "required"))
        elif len(self.id) > MAX_ID:
            problems.append(("id", f"{len(self.id)} characters long; Mailchimp allows at most {MAX_ID}"))
        if self.currency_code.upper() not in ISO_4217:
            problems.append(("currency_code", f"{self.currency_code!r} is not an ISO 4217 currency code"))
        if self.list_id and self.list_name:
            problems.append(("list_id", "give either list_id or list_name, not both"))
        return problems

    def body(self, list_id: str) -> dict[str, Any]:
        """The store's POST body (``is_syncing`` is managed separately, per run)."""
        return compact({
            "id": self.id,
            "list_id": list_id,
            "name": self.name,
            "currency_code": self.currency_code.upper(),
            "domain": self.domain,
            "platform": self.platform,
            "email_address": self.email_address,
            "money_format": self.money_format,
            "primary_locale": self.primary_locale,
            "timezone": self.timezone,
            "phone": self.phone,
        })


@dataclass(frozen=True)
class OrderStatusSpec:
    """Warehouse order statuses -> Mailchimp's, added to the built-in vocabulary."""

    financial: dict[str, str] = field(default_factory=dict)
    fulfillment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OnDeleteSpec:
    """What happens in Mailchimp to a record Mailchimp holds once its row leaves the source query.

    ``delete`` deletes it; ``ignore`` leaves it. Customers and orders are kept by default: a customer row can vanish from a view for many
    reasons, and a deleted order takes its revenue out of Mailchimp's reports. ``variant`` and
    ``order_line`` are the children of a product or order that still exists: a variant row that left
    ``product_variants`` is deleted (``DELETE .../products/{id}/variants/{variant_id}``), an order
    line that left ``order_lines`` too (``DELETE .../orders/{id}/lines/{line_id}``), after the
    product or order is sent without it.
    """

    customer: OnDelete = "ignore"
    product: OnDelete = "delete"
    variant: OnDelete = "delete"
    promo_rule: OnDelete = "delete"
    promo_code: OnDelete = "delete"
    order: OnDelete = "ignore"
    order_line: OnDelete = "delete"
    cart: OnDelete = "delete"


@dataclass(frozen=True)
class EcommerceSyncConfig:
    """``include/ecommerce_sync.yaml``."""

    store: StoreSpec
    audience_config: str = "audience_sync.yaml"
    """The audience sync's config (a path, or a name looked up in ``include/`` like this file):
    its audience and consent policy."""
    order_status: OrderStatusSpec = field(default_factory=OrderStatusSpec)
    on_delete: OnDeleteSpec = field(default_factory=OnDeleteSpec)
    mass_delete: MassDeleteSpec = field(default_factory=MassDeleteSpec)
    sync: SyncTuning = field(default_factory=SyncTuning)
    warehouse_conn_id: str = "warehouse_default"
    mailchimp_conn_id: str = "mailchimp_default"
    table_prefix: str = "mailchimp_"
    table_schema: str | None = None

    @property
    def status_maps(self) -> StatusMaps:
        return StatusMaps.default().extended(self.order_status.financial, self.order_status.fulfillment)

    @property
    def audience_config_path(self) -> Path:
        path = Path(self.audience_config)
        return path if path.is_absolute() else include_file(self.audience_config)

    def audience(self) -> AudienceSyncConfig:
        """The audience sync's config (parsed on demand; errors name that file)."""
        return load_audience_config(self.audience_config_path)

    def consent(self) -> ConsentSpec:
        """The audience sync's consent policy: the e-commerce sync follows the same one."""
        return self.audience().consent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_ecommerce_config(path: str | Path | None = None) -> EcommerceSyncConfig:
    """Parse and validate the e-commerce sync config (default: :func:`ecommerce_config_path`)."""
    return load_config(path or ecommerce_config_path(), EcommerceSyncConfig)
