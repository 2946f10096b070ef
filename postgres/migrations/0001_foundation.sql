-- The foundation: who owns stores, which agencies exist, and the catalogue of
-- document types and procedures. Later migrations add documents, consents and
-- the audit trail.

-- Subjects own stores. The identifier (personal identification number or
-- enterprise code) is personal data and appears in this table only; every
-- other table, object name, Vault key name and log uses the opaque handle.
CREATE TABLE subjects (
	id         text PRIMARY KEY CHECK (id ~ '^[0-9]{10}([0-9]{2}|[0-9]{3})?$'),
	kind       text NOT NULL CHECK (kind IN ('citizen', 'business')),
	handle     uuid NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	CHECK ((kind = 'citizen') = (length(id) = 12))
);

-- A business acts through its legal representative or persons it authorised.
CREATE TABLE business_representatives (
	business_handle uuid NOT NULL REFERENCES subjects (handle),
	person_handle   uuid NOT NULL REFERENCES subjects (handle),
	role            text NOT NULL CHECK (role IN ('legal_representative', 'authorised')),
	valid_from      timestamptz NOT NULL DEFAULT now(),
	valid_until     timestamptz,
	PRIMARY KEY (business_handle, person_handle)
);

CREATE TABLE agencies (
	code       text PRIMARY KEY,
	kind       text NOT NULL,
	name_vi    text NOT NULL,
	name_en    text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- The catalogue. sample marks codes invented for demonstration, not taken
-- from an official list.
CREATE TABLE document_types (
	code    text PRIMARY KEY,
	name_vi text NOT NULL,
	name_en text NOT NULL,
	sample  boolean NOT NULL DEFAULT false
);

CREATE TABLE procedures (
	code    text PRIMARY KEY,
	name_vi text NOT NULL,
	name_en text NOT NULL,
	sample  boolean NOT NULL DEFAULT false
);

CREATE TABLE procedure_document_types (
	procedure_code     text NOT NULL REFERENCES procedures (code),
	document_type_code text NOT NULL REFERENCES document_types (code),
	required           boolean NOT NULL,
	PRIMARY KEY (procedure_code, document_type_code)
);
