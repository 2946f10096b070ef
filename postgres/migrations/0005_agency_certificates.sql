-- Certificates issued by the deployment's PKI for agencies' Transit signing
-- keys. Renewed before they expire; old ones stay for verifying old
-- signatures.
CREATE TABLE agency_certificates (
	agency      text NOT NULL REFERENCES agencies (code),
	key_name    text NOT NULL,
	key_version integer NOT NULL,
	serial      text NOT NULL,
	not_after   timestamptz NOT NULL,
	chain_pem   text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (agency, serial)
);
CREATE INDEX agency_certificates_current ON agency_certificates (agency, key_version, not_after);

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT, INSERT ON %I.agency_certificates TO kho_app', s);
	END IF;
END $$;
