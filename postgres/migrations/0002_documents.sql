-- The vault core: documents, the audit events that record every access, the
-- outbox of notifications, and legal holds that block erasure.

ALTER TABLE subjects ADD COLUMN erased_at timestamptz;
-- Transit key versions below this no longer unwrap (set by kho keys rewrap
-- under a row lock, so a deposit that wrapped with a retired version while the
-- rewrap ran fails instead of committing an unreadable document).
ALTER TABLE subjects ADD COLUMN key_min_version integer NOT NULL DEFAULT 1;

-- One row per document version. The plaintext is never here: only its hash
-- and size, the object holding its ciphertext, and its file key wrapped by
-- the subject's Transit key. After erasure the row stays as a tombstone,
-- without object and wrapped key.
CREATE TABLE documents (
	id                uuid PRIMARY KEY,
	subject_handle    uuid NOT NULL REFERENCES subjects (handle),
	type_code         text NOT NULL REFERENCES document_types (code),
	name              text NOT NULL,
	number            text NOT NULL DEFAULT '',
	issued_on         date NOT NULL,
	issuer            text REFERENCES agencies (code),
	source            text NOT NULL CHECK (source IN ('agency_issued', 'self_declared')),
	summary           text NOT NULL DEFAULT '',
	valid_from        date,
	valid_until       date,
	scope             text NOT NULL DEFAULT '',
	dossier_code      text,
	procedure_code    text,
	result_code       text UNIQUE,
	status            text NOT NULL CHECK (status IN ('valid', 'superseded', 'revoked', 'erased')),
	revoke_reason     text,
	status_changed_at timestamptz,
	media_type        text NOT NULL,
	size              bigint NOT NULL CHECK (size >= 0),
	sha256            bytea NOT NULL CHECK (length(sha256) = 32),
	chain_id          uuid NOT NULL,
	version           integer NOT NULL CHECK (version >= 1),
	supersedes        uuid REFERENCES documents (id),
	superseded_by     uuid REFERENCES documents (id),
	object_name       text UNIQUE,
	wrapped_key       text,
	key_version       integer,
	signature         text NOT NULL,
	created_at        timestamptz NOT NULL DEFAULT now(),
	erased_at         timestamptz,
	UNIQUE (chain_id, version),
	CHECK ((source = 'agency_issued') = (issuer IS NOT NULL)),
	CHECK ((status = 'erased') = (object_name IS NULL AND wrapped_key IS NULL AND key_version IS NULL)),
	CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until >= valid_from)
);
CREATE INDEX documents_subject ON documents (subject_handle, id);
CREATE INDEX documents_issuer ON documents (issuer, id);
CREATE INDEX documents_stale_keys ON documents (subject_handle, key_version) WHERE wrapped_key IS NOT NULL;

-- Every access and change, as one row each. The audit issue chains these
-- rows and signs checkpoints; nothing else writes here (package audit).
CREATE TABLE audit_events (
	seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id             uuid NOT NULL UNIQUE,
	occurred_at    timestamptz NOT NULL,
	action         text NOT NULL,
	outcome        text NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
	actor_kind     text NOT NULL,
	actor_agency   text,
	actor_ref      text,
	subject_handle uuid,
	document_id    uuid,
	request_id     text,
	details        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_subject ON audit_events (subject_handle, seq);
CREATE INDEX audit_events_document ON audit_events (document_id, seq);

-- Notifications to deliver (to the subject, to agencies), written in the same
-- transaction as the change they announce.
CREATE TABLE outbox (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	topic          text NOT NULL,
	subject_handle uuid,
	payload        jsonb NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now(),
	delivered_at   timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;

-- Records a state agency must keep: while a hold applies, the subject's store
-- cannot be erased.
CREATE TABLE legal_holds (
	id             uuid PRIMARY KEY,
	subject_handle uuid NOT NULL REFERENCES subjects (handle),
	agency         text NOT NULL REFERENCES agencies (code),
	reason         text NOT NULL,
	until          timestamptz,
	created_at     timestamptz NOT NULL DEFAULT now(),
	released_at    timestamptz
);
CREATE INDEX legal_holds_subject ON legal_holds (subject_handle) WHERE released_at IS NULL;
