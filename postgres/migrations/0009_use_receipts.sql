-- Use receipts: for each admitted fetch by another agency, a JWS signed by
-- kho binding the document and its hash, the procedure, the agency, the
-- time, and the consent receipt (or legal basis) that admitted it. The
-- agency keeps it as proof; the subject sees it in the access log.
CREATE TABLE use_receipts (
	id             uuid PRIMARY KEY,
	subject_handle uuid NOT NULL,
	agency         text NOT NULL,
	document_id    uuid NOT NULL,
	consent_id     uuid,
	jws            text NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX use_receipts_subject ON use_receipts (subject_handle, created_at);

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT, INSERT ON %I.use_receipts TO kho_app', s);
	END IF;
END $$;
