-- The audit trail becomes verifiable and append-only.
--
-- Every event is a leaf of a Merkle tree (RFC 6962 hashing) and carries the
-- leaf hash of the event before it. Appends take the single head row's lock,
-- so any number of khod replicas extend one linear chain. Completed tree
-- nodes are kept for proofs; signed checkpoints (tree size and root) anchor
-- the log for verifiers outside kho.

ALTER TABLE audit_events
	ADD COLUMN leaf_index  bigint UNIQUE,
	ADD COLUMN prev_hash   bytea,
	ADD COLUMN leaf_hash   bytea,
	ADD COLUMN actor_staff text,
	ADD COLUMN acting_for  text,
	ADD COLUMN purpose     text,
	ADD COLUMN consent_id  uuid,
	ADD COLUMN legal_basis text,
	ADD COLUMN reason      text;
-- Events recorded before this migration have no leaf_index: the verifier
-- reports them as unchained. New databases have none.
CREATE INDEX audit_events_actor ON audit_events (actor_agency, occurred_at);
CREATE INDEX audit_events_time ON audit_events (occurred_at);

CREATE TABLE audit_head (
	id           integer PRIMARY KEY CHECK (id = 1),
	size         bigint NOT NULL,
	last_leaf    bytea,
	range_hashes bytea[] NOT NULL
);
INSERT INTO audit_head (id, size, last_leaf, range_hashes) VALUES (1, 0, NULL, '{}');

CREATE TABLE audit_tree_nodes (
	level smallint NOT NULL,
	idx   bigint NOT NULL,
	hash  bytea NOT NULL,
	PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoints (
	size       bigint PRIMARY KEY,
	root       bytea NOT NULL,
	note       text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Nobody changes or removes what the log holds, not even the owner: the
-- triggers refuse it. (A superuser can disable them; verification then
-- detects the change.)
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
		USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_tree_nodes
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_tree_nodes
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- khod connects as the application role kho_app, when the deployment has
-- one: it may read and write what it needs, but only append to the audit
-- trail. Migrations run as the owner.
DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT USAGE ON SCHEMA %I TO kho_app', s);
		EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO kho_app', s);
		EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I.audit_events, %I.audit_tree_nodes, %I.audit_checkpoints, %I.schema_migrations FROM kho_app', s, s, s, s);
		EXECUTE format('REVOKE INSERT ON %I.schema_migrations FROM kho_app', s);
		EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO kho_app', s);
	END IF;
END $$;
