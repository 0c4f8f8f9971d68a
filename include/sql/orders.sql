-- orders: one row per order, in every financial and fulfillment status. Returns the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    order_id,
    customer_id,
    currency_code,
    order_total,
    tax_total,
    shipping_total,
    discount_total,
    financial_status,
    fulfillment_status,
    order_url,
    processed_at,
    cancelled_at,
    updated_at,
    -- optional: the buyer as the order records them. An order whose customer_id is not in
    -- customers (a guest checkout) creates its e-commerce customer from these; select NULL
    -- AS customer_email (etc.) if the warehouse has no such columns.
    customer_email,
    customer_first_name,
    customer_last_name
FROM orders
ORDER BY order_id
