-- cart_lines: one row per cart line (line_id unique within its cart). Optional, like carts.
-- Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    cart_id,
    line_id,
    product_id,
    variant_id,
    quantity,
    price
FROM cart_lines
ORDER BY cart_id, line_id
