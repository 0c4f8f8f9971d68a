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
    -- optional, beyond the contract: the buyer as the order records them. An order whose
    -- customer_id is not in customers (a guest checkout) creates its e-commerce customer from
    -- these. Written as orders.<column>, each reads as NULL when orders has no such column (the
    -- task log says so once per run); write any other expression to take control of it.
    orders.customer_email AS customer_email,
    orders.customer_first_name AS customer_first_name,
    orders.customer_last_name AS customer_last_name,
    -- optional: the cart this order was bought from; that cart is deleted in Mailchimp, so no
    -- abandoned-cart email follows a purchase (NULL when orders has no such column)
    orders.cart_id AS cart_id
FROM orders
ORDER BY order_id
