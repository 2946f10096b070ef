-- The portal's sessions: the cookie holds a random id; only its SHA-256 is
-- kept here, with the principal the identity provider's token proved, the
-- session's CSRF token, and when it was last used (idle timeout) and ends
-- (the token's expiry). Kept in PostgreSQL so any khod replica serves any
-- session.
CREATE TABLE portal_sessions (
	id_sha256  bytea PRIMARY KEY,
	principal  jsonb NOT NULL,
	csrf       text NOT NULL,
	acting_for text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now(),
	seen_at    timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.portal_sessions TO kho_app', s);
	END IF;
END $$;
