-- promo_codes: one row per redeemable code of a promo rule. Returns the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    promo_code_id,
    promo_rule_id,
    code,
    redemption_url,
    usage_count,
    enabled,
    created_at,
    updated_at
FROM promo_codes
ORDER BY promo_code_id
