-- Objects being written: a deposit records its object's name before the
-- upload starts and removes it in the transaction that records the
-- document. What a crashed khod left (a completed object without a row, or
-- an incomplete multipart upload, which MinIO lists only by exact name) is
-- found here by the reconciler once the grace period has passed.
CREATE TABLE pending_objects (
	object_name text PRIMARY KEY,
	started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_objects_started ON pending_objects (started_at);

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT, INSERT, DELETE ON %I.pending_objects TO kho_app', s);
	END IF;
END $$;
