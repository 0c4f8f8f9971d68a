-- erasure_requests: people who asked to be forgotten (GDPR), oldest first. Returns the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL.
SELECT
    customer_id,
    email,
    requested_at
FROM marketing_erasure_requests
ORDER BY requested_at, request_id
