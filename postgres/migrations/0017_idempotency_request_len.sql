-- How much of a kept request's body request_hash covers: NULL, all of it
-- (a JSON write); a length, its first bytes (a deposit, up to the end of
-- its file part, or a body with more after it than is ever read). A retry
-- is compared over as much.
ALTER TABLE idempotency_keys ADD COLUMN request_len bigint;
