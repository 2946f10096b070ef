-- Data life, enforced where kho can: each delivery's use receipt says by
-- when the agency must delete its copy; kho tells the agency when that
-- comes (an outbox event) and records whether it acknowledged deletion.
ALTER TABLE use_receipts ADD COLUMN delete_by timestamptz;
ALTER TABLE use_receipts ADD COLUMN deletion_due_sent_at timestamptz;
ALTER TABLE use_receipts ADD COLUMN deletion_acknowledged_at timestamptz;
CREATE INDEX use_receipts_deletion_due ON use_receipts (delete_by) WHERE deletion_acknowledged_at IS NULL AND deletion_due_sent_at IS NULL;

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT UPDATE ON %I.use_receipts TO kho_app', s);
		EXECUTE format('GRANT INSERT ON %I.outbox TO kho_app', s);
	END IF;
END $$;
