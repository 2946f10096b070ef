-- Trust by construction: issuing authority per document type and store kind,
-- result codes unique per issuing agency, stores whose identifier is scrubbed
-- on erasure, legal holds with a legal basis, and consent requests that a
-- guardian and a child both answer.

ALTER TABLE document_types
	ADD COLUMN subject_kinds text[] NOT NULL DEFAULT '{citizen}';

-- A result code is <dossier code>-KQn, and a dossier belongs to the agency
-- that received it: two agencies' codes never collide, so one agency cannot
-- take another's code first.
ALTER TABLE documents DROP CONSTRAINT documents_result_code_key;
CREATE UNIQUE INDEX documents_issuer_result ON documents (issuer, result_code) WHERE result_code IS NOT NULL;

-- After erasure the identification number is gone: the row stays as a
-- tombstone under its handle, which the audit trail names.
-- The handle (UNIQUE NOT NULL, what every other table references) is the
-- row's key from now on.
ALTER TABLE subjects DROP CONSTRAINT subjects_pkey;
ALTER TABLE subjects ALTER COLUMN id DROP NOT NULL;
ALTER TABLE subjects ADD CONSTRAINT subjects_id_key UNIQUE (id);
ALTER TABLE subjects ADD CONSTRAINT subjects_id_or_erased CHECK (id IS NOT NULL OR erased_at IS NOT NULL);

ALTER TABLE legal_holds
	ADD COLUMN legal_basis    text,
	ADD COLUMN released_by    text,
	ADD COLUMN release_reason text;

-- Who has approved a request so far (self, guardian): a ward's consent needs
-- the guardian's and, from age 7, the ward's own.
ALTER TABLE consent_requests
	ADD COLUMN approvals text[] NOT NULL DEFAULT '{}';

-- Guardianships and representations have a start as well as an end.
ALTER TABLE guardianships
	ADD COLUMN valid_from date NOT NULL DEFAULT current_date;
