-- erasure_requests: people who asked to be forgotten (GDPR), oldest first. Returns the contract's column
-- names (see the README); edit the FROM/expressions to map a different warehouse, or point
-- it at a view. Keep it plain SQL: it runs on SQLite and PostgreSQL. Without the table,
-- erasure is off (the log says so every run); any other error here fails the sync before it
-- sends anything.
SELECT
    customer_id,
    email,
    requested_at
FROM marketing_erasure_requests
ORDER BY requested_at, customer_id, email
