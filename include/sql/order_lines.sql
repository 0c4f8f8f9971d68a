-- order_lines: one row per order line (line_id unique within its order). Returns the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    order_id,
    line_id,
    product_id,
    variant_id,
    quantity,
    price,
    discount
FROM order_lines
ORDER BY order_id, line_id
