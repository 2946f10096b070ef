-- Status pushed to holders: an agency registers where kho POSTs signed
-- events about documents it fetched and consents it holds; each event is
-- delivered at least once, retried with backoff, then left dead for an
-- operator to see and replay.
CREATE TABLE agency_webhooks (
	agency     text PRIMARY KEY REFERENCES agencies (code),
	url        text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
	id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_id        uuid NOT NULL UNIQUE,
	outbox_id       bigint NOT NULL,
	agency          text NOT NULL,
	topic           text NOT NULL,
	jws             text NOT NULL,
	state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
	attempts        integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	last_error      text,
	delivered_at    timestamptz,
	created_at      timestamptz NOT NULL DEFAULT now(),
	UNIQUE (outbox_id, agency)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

DO $$
DECLARE s text := current_schema();
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kho_app') THEN
		EXECUTE format('GRANT SELECT ON %I.agency_webhooks TO kho_app', s);
		EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.webhook_deliveries TO kho_app', s);
		EXECUTE format('GRANT SELECT, UPDATE ON %I.outbox TO kho_app', s);
	END IF;
END $$;
