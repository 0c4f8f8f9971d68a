-- products: one row per product. Returns exactly the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    product_id,
    title,
    handle,
    url,
    description,
    category,
    vendor,
    image_url,
    published_at,
    created_at,
    updated_at
FROM products
ORDER BY product_id
