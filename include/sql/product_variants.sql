-- product_variants: one row per sellable variant (a product without one is sent as a single variant). Contract columns
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    variant_id,
    product_id,
    title,
    sku,
    price,
    inventory_quantity,
    url,
    image_url,
    updated_at
FROM product_variants
ORDER BY product_id, variant_id
