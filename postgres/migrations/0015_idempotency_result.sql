-- What the work under a claim committed (a document's id), written in the
-- work's own transaction, and only while the claim is still the request's:
-- a khod that dies between committing and storing its answer leaves the
-- result, and the retry that takes the claim over answers from it instead
-- of doing the work twice; a request whose claim was taken over cannot
-- commit at all.
ALTER TABLE idempotency_keys ADD COLUMN result text;
