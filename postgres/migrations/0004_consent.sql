-- Consent and reuse: the catalogue's reuse fields, consent requests, consent
-- artefacts with their history and receipts, and guardianships.

ALTER TABLE document_types
	ADD COLUMN issuer_kinds    text[] NOT NULL DEFAULT '{}',
	ADD COLUMN validity_months integer;
ALTER TABLE procedures
	ADD COLUMN handler_kinds text[] NOT NULL DEFAULT '{}';

CREATE TABLE catalogue_versions (
	version   text PRIMARY KEY,
	loaded_at timestamptz NOT NULL DEFAULT now(),
	sha256    text NOT NULL
);

-- A guardian acts for a minor (or a person under guardianship).
CREATE TABLE guardianships (
	guardian_handle uuid NOT NULL REFERENCES subjects (handle),
	ward_handle     uuid NOT NULL REFERENCES subjects (handle),
	basis           text NOT NULL,
	valid_until     date,
	PRIMARY KEY (guardian_handle, ward_handle)
);

-- An agency's request for consent: what, why, for how long.
CREATE TABLE consent_requests (
	id             uuid PRIMARY KEY,
	subject_handle uuid NOT NULL REFERENCES subjects (handle),
	agency         text NOT NULL REFERENCES agencies (code),
	procedure_code text NOT NULL REFERENCES procedures (code),
	purpose        text NOT NULL,
	document_types text[] NOT NULL,
	valid_until    timestamptz NOT NULL,
	mode           text NOT NULL CHECK (mode IN ('once', 'standing')),
	max_uses       integer CHECK (max_uses IS NULL OR max_uses >= 1),
	data_life_days integer NOT NULL CHECK (data_life_days >= 0),
	status         text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'withdrawn')),
	consent_id     uuid,
	created_at     timestamptz NOT NULL DEFAULT now(),
	decided_at     timestamptz
);
CREATE INDEX consent_requests_subject ON consent_requests (subject_handle, created_at);

-- The consent artefact: one purpose, one grantee, never bundled.
CREATE TABLE consents (
	id             uuid PRIMARY KEY,
	subject_handle uuid NOT NULL REFERENCES subjects (handle),
	grantee        text NOT NULL REFERENCES agencies (code),
	procedure_code text NOT NULL REFERENCES procedures (code),
	purpose        text NOT NULL,
	document_types text[] NOT NULL,
	document_ids   uuid[] NOT NULL DEFAULT '{}',
	valid_from     timestamptz NOT NULL,
	valid_until    timestamptz NOT NULL CHECK (valid_until > valid_from),
	mode           text NOT NULL CHECK (mode IN ('once', 'standing')),
	max_uses       integer CHECK (max_uses IS NULL OR max_uses >= 1),
	uses           integer NOT NULL DEFAULT 0 CHECK (max_uses IS NULL OR uses <= max_uses),
	data_life_days integer NOT NULL CHECK (data_life_days >= 0),
	channel        text NOT NULL,
	status         text NOT NULL CHECK (status IN ('active', 'paused', 'revoked')),
	granted_by     text NOT NULL, -- self, guardian, legal_representative, authorised
	request_id     uuid REFERENCES consent_requests (id),
	created_at     timestamptz NOT NULL DEFAULT now(),
	CHECK (mode = 'standing' OR max_uses = 1)
);
CREATE INDEX consents_lookup ON consents (subject_handle, grantee, procedure_code) WHERE status = 'active';

-- Every status change, with who made it and the receipt the subject got.
CREATE TABLE consent_history (
	consent_id uuid NOT NULL REFERENCES consents (id),
	seq        integer NOT NULL,
	at         timestamptz NOT NULL DEFAULT now(),
	status     text NOT NULL,
	actor_kind text NOT NULL,
	actor_ref  text,
	reason     text,
	receipt    text NOT NULL,
	PRIMARY KEY (consent_id, seq)
);

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.catalogue_versions, %I.guardianships, %I.consent_requests, %I.consents TO kho_app', s, s, s, s);
		EXECUTE format('GRANT SELECT, INSERT ON %I.consent_history TO kho_app', s);
	END IF;
END $$;
