-- The SHA-256 of the route and of the first result_len bytes of the body of
-- the request whose work committed result, as read when it committed: a
-- retry that takes the claim over and whose body starts otherwise is
-- another request (422), not the one to answer from result.
ALTER TABLE idempotency_keys ADD COLUMN result_hash bytea, ADD COLUMN result_len bigint;
