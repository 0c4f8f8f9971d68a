-- promo_rules: one row per discount rule. Returns the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    promo_rule_id,
    title,
    description,
    amount,
    type,
    target,
    starts_at,
    ends_at,
    enabled,
    created_at,
    updated_at
FROM promo_rules
ORDER BY promo_rule_id
