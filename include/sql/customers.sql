-- customers: one row per person or account that may receive email. Returns exactly the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    customer_id,
    email,
    first_name,
    last_name,
    company,
    phone,
    customer_type,
    tags,
    address1,
    city,
    province,
    postal_code,
    country_code,
    marketing_opt_in,
    no_marketing,
    is_guest,
    created_at,
    updated_at
FROM customers
ORDER BY customer_id
