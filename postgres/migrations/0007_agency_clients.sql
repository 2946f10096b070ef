-- Agencies' systems as OAuth clients (RFC 7523 private_key_jwt): the
-- public keys each agency registers, and the client assertions already
-- used, kept until they expire so that none is accepted twice.
CREATE TABLE agency_client_keys (
	agency     text NOT NULL REFERENCES agencies (code),
	kid        text NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
	use        text NOT NULL CHECK (use IN ('sig', 'enc')),
	jwk        jsonb NOT NULL,
	added_at   timestamptz NOT NULL DEFAULT now(),
	retired_at timestamptz,
	PRIMARY KEY (agency, kid)
);

CREATE TABLE oauth_assertions (
	agency     text NOT NULL,
	jti        text NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (agency, jti)
);
CREATE INDEX oauth_assertions_expiry ON oauth_assertions (expires_at);

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT ON %I.agency_client_keys TO kho_app', s);
		EXECUTE format('GRANT SELECT, INSERT, DELETE ON %I.oauth_assertions TO kho_app', s);
	END IF;
END $$;
