"""The contract's source tables: what the forward DAGs read (customers, products, orders...).

The project never writes these in production; the demo (``demo/data.py``) and the tests create
them here so the extraction queries in ``include/sql`` have something real to run against.
There are deliberately no foreign keys: warehouses rarely enforce them, and the demo needs rows
that break them (an order line for a product that does not exist).

``SOURCE_COLUMNS`` lists, per extraction query, the columns the contract promises and their
logical type; ``extract.stream_sql`` uses it to normalise what drivers return (SQLite's 0/1
booleans, timestamp strings and float decimals).
"""

from __future__ import annotations

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import UtcDateTime, key_text

# Logical types: text, bool, int, decimal, timestamp.
SOURCE_COLUMNS: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "text", "email": "text", "first_name": "text", "last_name": "text",
        "company": "text", "phone": "text", "customer_type": "text", "tags": "text",
        "address1": "text", "city": "text", "province": "text", "postal_code": "text",
        "country_code": "text", "marketing_opt_in": "bool", "no_marketing": "bool",
        "is_guest": "bool", "created_at": "timestamp", "updated_at": "timestamp",
    },
    "products": {
        "product_id": "text", "title": "text", "handle": "text", "url": "text",
        "description": "text", "category": "text", "vendor": "text", "image_url": "text",
        "published_at": "timestamp", "created_at": "timestamp", "updated_at": "timestamp",
    },
    "product_variants": {
        "variant_id": "text", "product_id": "text", "title": "text", "sku": "text",
        "price": "decimal", "inventory_quantity": "int", "url": "text", "image_url": "text",
        "updated_at": "timestamp",
    },
    "orders": {
        "order_id": "text", "customer_id": "text", "currency_code": "text",
        "order_total": "decimal", "tax_total": "decimal", "shipping_total": "decimal",
        "discount_total": "decimal", "financial_status": "text", "fulfillment_status": "text",
        "order_url": "text", "processed_at": "timestamp", "cancelled_at": "timestamp",
        "updated_at": "timestamp",
        # optional extension (nullable): the buyer as the order knows them, for customers that
        # appear only on orders (guest checkouts); the e-commerce sync creates them from these
        "customer_email": "text", "customer_first_name": "text", "customer_last_name": "text",
        # optional extension: the cart the order was bought from (that cart is deleted in Mailchimp)
        "cart_id": "text",
    },
    "order_lines": {
        "order_id": "text", "line_id": "text", "product_id": "text", "variant_id": "text",
        "quantity": "int", "price": "decimal", "discount": "decimal",
    },
    "order_promos": {
        "order_id": "text", "code": "text", "amount_discounted": "decimal", "type": "text",
    },
    "promo_rules": {
        "promo_rule_id": "text", "title": "text", "description": "text", "amount": "decimal",
        "type": "text", "target": "text", "starts_at": "timestamp", "ends_at": "timestamp",
        "enabled": "bool", "created_at": "timestamp", "updated_at": "timestamp",
    },
    "promo_codes": {
        "promo_code_id": "text", "promo_rule_id": "text", "code": "text", "redemption_url": "text",
        "usage_count": "int", "enabled": "bool", "created_at": "timestamp", "updated_at": "timestamp",
    },
    # the query is include/sql/erasure_requests.sql; the table is marketing_erasure_requests
    "erasure_requests": {"customer_id": "text", "email": "text", "requested_at": "timestamp"},
}

OPTIONAL_SOURCE_COLUMNS: dict[str, dict[str, str]] = {
    # beyond the contract, for abandoned-cart emails: the sync works without them (see
    # warehouse.optional_inputs.OPTIONAL_TABLES)
    "carts": {
        "cart_id": "text", "customer_id": "text", "checkout_url": "text", "currency_code": "text",
        "order_total": "decimal", "tax_total": "decimal", "created_at": "timestamp", "updated_at": "timestamp",
    },
    "cart_lines": {
        "cart_id": "text", "line_id": "text", "product_id": "text", "variant_id": "text",
        "quantity": "int", "price": "decimal",
    },
}
"""Queries over optional source tables (``include/sql/carts.sql``...), typed like the contract's."""

# Column name -> logical type over all queries (names mean the same thing in every table).
COLUMN_TYPES: dict[str, str] = {
    name: kind
    for columns in (*SOURCE_COLUMNS.values(), *OPTIONAL_SOURCE_COLUMNS.values())
    for name, kind in columns.items()
}

_MONEY = sa.Numeric(14, 2)


def source_metadata(schema: str | None = None) -> sa.MetaData:
    """A MetaData holding every source table (in ``schema`` when given)."""
    md = sa.MetaData(schema=schema)
    text = sa.Text
    sa.Table(
        "customers", md,
        # no length limit: the demo carries ids over Mailchimp's 50 characters on purpose
        sa.Column("customer_id", key_text(255), primary_key=True),
        sa.Column("email", text),
        sa.Column("first_name", text), sa.Column("last_name", text),
        sa.Column("company", text), sa.Column("phone", text),
        sa.Column("customer_type", text), sa.Column("tags", text),
        sa.Column("address1", text), sa.Column("city", text), sa.Column("province", text),
        sa.Column("postal_code", text), sa.Column("country_code", text),
        sa.Column("marketing_opt_in", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("no_marketing", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("is_guest", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UtcDateTime), sa.Column("updated_at", UtcDateTime),
        sa.Index("ix_customers_updated_at", "updated_at"),
    )
    sa.Table(
        "products", md,
        sa.Column("product_id", key_text(255), primary_key=True),
        sa.Column("title", text), sa.Column("handle", text), sa.Column("url", text),
        sa.Column("description", text), sa.Column("category", text), sa.Column("vendor", text),
        sa.Column("image_url", text),
        sa.Column("published_at", UtcDateTime), sa.Column("created_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime),
    )
    sa.Table(
        "product_variants", md,
        sa.Column("variant_id", key_text(255), primary_key=True),
        sa.Column("product_id", key_text(255), nullable=False),
        sa.Column("title", text), sa.Column("sku", text),
        sa.Column("price", _MONEY), sa.Column("inventory_quantity", sa.Integer),
        sa.Column("url", text), sa.Column("image_url", text),
        sa.Column("updated_at", UtcDateTime),
        sa.Index("ix_product_variants_product_id", "product_id"),
    )
    sa.Table(
        "orders", md,
        sa.Column("order_id", key_text(255), primary_key=True),
        sa.Column("customer_id", key_text(255)),
        sa.Column("currency_code", sa.String(3)),
        sa.Column("order_total", _MONEY), sa.Column("tax_total", _MONEY),
        sa.Column("shipping_total", _MONEY), sa.Column("discount_total", _MONEY),
        sa.Column("financial_status", sa.String(32)), sa.Column("fulfillment_status", sa.String(32)),
        sa.Column("order_url", text),
        sa.Column("processed_at", UtcDateTime), sa.Column("cancelled_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime),
        # not in the contract's minimum: guest checkouts carry their buyer here (all nullable)
        sa.Column("customer_email", text), sa.Column("customer_first_name", text),
        sa.Column("customer_last_name", text),
        sa.Index("ix_orders_customer_id", "customer_id"),
        sa.Index("ix_orders_updated_at", "updated_at"),
    )
    sa.Table(
        "order_lines", md,
        sa.Column("order_id", key_text(255), primary_key=True),
        sa.Column("line_id", key_text(255), primary_key=True),
        sa.Column("product_id", key_text(255)), sa.Column("variant_id", key_text(255)),
        sa.Column("quantity", sa.Integer), sa.Column("price", _MONEY), sa.Column("discount", _MONEY),
    )
    sa.Table(
        "order_promos", md,
        sa.Column("order_id", key_text(255), primary_key=True),
        sa.Column("code", key_text(255), primary_key=True),
        sa.Column("amount_discounted", _MONEY),
        sa.Column("type", sa.String(16)),
    )
    sa.Table(
        "promo_rules", md,
        sa.Column("promo_rule_id", key_text(255), primary_key=True),
        sa.Column("title", text), sa.Column("description", text),
        sa.Column("amount", sa.Numeric(14, 4)),
        sa.Column("type", sa.String(16)), sa.Column("target", sa.String(16)),
        sa.Column("starts_at", UtcDateTime), sa.Column("ends_at", UtcDateTime),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", UtcDateTime), sa.Column("updated_at", UtcDateTime),
    )
    sa.Table(
        "promo_codes", md,
        sa.Column("promo_code_id", key_text(255), primary_key=True),
        sa.Column("promo_rule_id", key_text(255), nullable=False),
        sa.Column("code", text), sa.Column("redemption_url", text),
        sa.Column("usage_count", sa.Integer),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", UtcDateTime), sa.Column("updated_at", UtcDateTime),
    )
    sa.Table(
        "marketing_erasure_requests", md,
        # a request may name only an email, so the contract columns cannot be the key
        sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", key_text(255)),
        sa.Column("email", text),
        sa.Column("requested_at", UtcDateTime, nullable=False),
    )
    return md


SOURCE_TABLE_NAMES: tuple[str, ...] = tuple(source_metadata().tables)


def cart_metadata(schema: str | None = None) -> sa.MetaData:
    """The optional cart tables (``carts``, ``cart_lines``), apart from the contract's."""
    md = sa.MetaData(schema=schema)
    sa.Table(
        "carts", md,
        sa.Column("cart_id", key_text(255), primary_key=True),
        sa.Column("customer_id", key_text(255)),
        sa.Column("checkout_url", sa.Text), sa.Column("currency_code", sa.String(3)),
        sa.Column("order_total", _MONEY), sa.Column("tax_total", _MONEY),
        sa.Column("created_at", UtcDateTime), sa.Column("updated_at", UtcDateTime),
    )
    sa.Table(
        "cart_lines", md,
        sa.Column("cart_id", key_text(255), primary_key=True),
        sa.Column("line_id", key_text(255), primary_key=True),
        sa.Column("product_id", key_text(255)), sa.Column("variant_id", key_text(255)),
        sa.Column("quantity", sa.Integer), sa.Column("price", _MONEY),
    )
    return md


def create_cart_tables(engine: sa.Engine, schema: str | None = None) -> sa.MetaData:
    """Create the optional cart tables that do not exist yet; returns their MetaData."""
    md = cart_metadata(schema)
    with engine.begin() as conn:
        md.create_all(conn, checkfirst=True)
    return md


def create_source_tables(engine: sa.Engine, schema: str | None = None) -> sa.MetaData:
    """Create the source tables that do not exist yet; returns their MetaData."""
    md = source_metadata(schema)
    with engine.begin() as conn:
        if schema and conn.dialect.name != "sqlite":
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        md.create_all(conn, checkfirst=True)
    return md
