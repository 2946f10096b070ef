-- Each claim of a pending idempotency key gets an id of its own: the
-- request that holds it renews, completes or releases that claim only, so a
-- request whose claim was taken over (its renewals stopped) can never write
-- into, or delete, the claim of the retry that took it.
ALTER TABLE idempotency_keys ADD COLUMN claim uuid;
