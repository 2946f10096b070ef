-- What the work under a claim committed (a document's id), written in the
-- work's own transaction, and only while the claim is still the request's:
-- a khod that dies between committing and storing its answer leaves the
-- result, and the retry that takes the claim over answers from it instead
-- of doing the work again; a request whose claim was taken over cannot
-- commit at all. result_hash is the SHA-256 of the route and of the first
-- result_len bytes of the request's body, as read when the work committed:
-- a retry whose body starts otherwise is another request (422).
ALTER TABLE idempotency_keys ADD COLUMN result text, ADD COLUMN result_hash bytea, ADD COLUMN result_len bigint;
