-- Idempotency keys (the IETF Idempotency-Key header): a retried write with
-- the same key and body answers as the first did, without doing it again.
-- owner is a hash of the caller's identity, never a person's number.
CREATE TABLE idempotency_keys (
	owner        text NOT NULL,
	key          text NOT NULL,
	route        text NOT NULL,
	request_hash bytea,
	state        text NOT NULL CHECK (state IN ('pending', 'done')),
	status       integer,
	content_type text,
	location     text,
	body         bytea,
	created_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.idempotency_keys TO kho_app', s);
	END IF;
END $$;
