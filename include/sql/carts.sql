-- carts: one row per open cart (optional: without a carts table, carts are simply not synced).
-- Beyond the warehouse contract: what Mailchimp's abandoned-cart emails work from. checkout_url
-- is where the email sends the buyer back; a cart without one is skipped. Remove a cart's row
-- (or give its order orders.cart_id) once it is bought, and the sync deletes it in Mailchimp.
-- Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    cart_id,
    customer_id,
    checkout_url,
    currency_code,
    order_total,
    tax_total,
    created_at,
    updated_at
FROM carts
ORDER BY cart_id
