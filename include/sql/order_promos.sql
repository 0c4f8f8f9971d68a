-- order_promos: promo codes applied to an order (type fixed|percentage). Returns the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    order_id,
    code,
    amount_discounted,
    type
FROM order_promos
ORDER BY order_id, code
