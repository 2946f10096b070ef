// Package outbox delivers what the outbox holds: every change kho writes
// with a notification (a document revoked or superseded, a consent paused,
// resumed, revoked or used) reaches the agencies concerned as a signed
// event POSTed to the webhook they registered, at least once, with an
// event id for de-duplication. Failed deliveries are retried with
// exponential backoff and jitter, then left dead for an operator to see and
// replay. Citizens read the same notifications in their inbox.
//
// outbox imports the root and postgres packages; the signer is handed in.
package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/postgres"
)

// EventType is the JWS typ of a webhook event.
const EventType = "kho-event+jws"

// Signer signs events; *vault.Transit meets it.
type Signer interface {
	SignCompact(ctx context.Context, key string, payload []byte, typ string) (string, error)
}

// Config configures the dispatcher.
type Config struct {
	DB     *postgres.DB
	Signer Signer
	Key    string // the Transit key that signs events (published in the JWKS)
	Issuer string
	// HTTP posts the events. By default: 10 s a delivery, no redirects
	// followed, and no connection to a loopback, private, link-local or
	// otherwise internal address unless AllowInternal (dev and tests),
	// whatever the webhook's name resolves to when it is called.
	HTTP          *http.Client
	AllowInternal bool
	Backoff       time.Duration // the first retry's delay (default 10s), doubling
	MaxAttempts   int           // then dead (default 10)
	Batch         int           // rows per pass (default 100)
	Now           func() time.Time
}

// Dispatcher routes outbox rows to agencies and delivers them.
type Dispatcher struct{ cfg Config }

// New validates cfg.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.DB == nil || cfg.Signer == nil || cfg.Key == "" || cfg.Issuer == "" {
		return nil, kho.Errorf(kho.EINVALID, "outbox: a database, a signer, its key and an issuer are required")
	}
	if cfg.HTTP == nil {
		dialer := &net.Dialer{Timeout: 5 * time.Second}
		if !cfg.AllowInternal {
			dialer.Control = refuseInternal
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = dialer.DialContext
		tr.Proxy = nil
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second, Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 10 * time.Second
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.Batch == 0 {
		cfg.Batch = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Dispatcher{cfg: cfg}, nil
}

// Event is what an agency receives, signed.
type Event struct {
	Issuer   string          `json:"iss"`
	IssuedAt int64           `json:"iat"`
	ID       string          `json:"jti"` // the event id: de-duplicate on it
	Agency   kho.AgencyCode  `json:"aud"`
	Topic    string          `json:"topic"`
	Payload  json.RawMessage `json:"payload"`
}

// Run routes and delivers every interval until ctx ends.
func (d *Dispatcher) Run(ctx context.Context, every time.Duration, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := d.DeletionDue(ctx); err != nil && onErr != nil {
			onErr(err)
		}
		if _, err := d.Route(ctx); err != nil && onErr != nil {
			onErr(err)
		}
		if _, err := d.Deliver(ctx); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DeletionDue queues, once per delivery whose data life has ended and
// whose deletion the agency has not acknowledged, a "delivery.deletion_due"
// notification: to the agency's webhook, and in the subject's inbox. It
// returns how many it queued.
func (d *Dispatcher) DeletionDue(ctx context.Context) (int, error) {
	tag, err := d.cfg.DB.Pool.Exec(ctx, `WITH due AS (
			UPDATE use_receipts SET deletion_due_sent_at = $1
			WHERE id IN (SELECT id FROM use_receipts WHERE delete_by <= $1 AND deletion_acknowledged_at IS NULL AND deletion_due_sent_at IS NULL LIMIT $2)
			RETURNING id, subject_handle, agency, delete_by)
		INSERT INTO outbox (topic, subject_handle, payload)
		SELECT 'delivery.deletion_due', subject_handle, jsonb_build_object('agency', agency, 'use_receipt', id, 'delete_by', delete_by) FROM due`,
		d.cfg.Now(), d.cfg.Batch)
	if err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "outbox: queue deletions due", err)
	}
	return int(tag.RowsAffected()), nil
}

// Route turns undelivered outbox rows into deliveries for the agencies
// concerned that registered a webhook: the agencies that fetched a
// document revoked or superseded, the grantee of a consent that changed.
// It returns how many rows it routed.
func (d *Dispatcher) Route(ctx context.Context) (int, error) {
	n := 0
	err := d.cfg.DB.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, topic, payload FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, d.cfg.Batch)
		if err != nil {
			return err
		}
		type row struct {
			id      int64
			topic   string
			payload []byte
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.topic, &x.payload)
		})
		if err != nil {
			return err
		}
		for _, r := range list {
			var p struct {
				DocumentID string `json:"document_id"`
				Agency     string `json:"agency"`
			}
			_ = json.Unmarshal(r.payload, &p)
			var agencies []string
			switch {
			case p.DocumentID != "":
				// Holders: the agencies that fetched it under consent or a
				// legal basis.
				ar, err := tx.Query(ctx, `SELECT DISTINCT u.agency FROM use_receipts u JOIN agency_webhooks w ON w.agency = u.agency WHERE u.document_id = $1`, p.DocumentID)
				if err != nil {
					return err
				}
				if agencies, err = pgx.CollectRows(ar, pgx.RowTo[string]); err != nil {
					return err
				}
			case p.Agency != "":
				var ok bool
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agency_webhooks WHERE agency = $1)`, p.Agency).Scan(&ok); err != nil {
					return err
				}
				if ok {
					agencies = []string{p.Agency}
				}
			}
			for _, a := range agencies {
				ev := Event{Issuer: d.cfg.Issuer, IssuedAt: time.Now().Unix(), ID: uuid.NewString(), Agency: kho.AgencyCode(a), Topic: r.topic, Payload: r.payload}
				b, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				jws, err := d.cfg.Signer.SignCompact(ctx, d.cfg.Key, b, EventType)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (event_id, outbox_id, agency, topic, jws) VALUES ($1, $2, $3, $4, $5)
					ON CONFLICT (outbox_id, agency) DO NOTHING`, ev.ID, r.id, a, r.topic, jws); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE outbox SET delivered_at = now() WHERE id = $1`, r.id); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "outbox: route", err)
	}
	return n, nil
}

// Deliver POSTs the deliveries that are due, one attempt each: a 2xx
// answer delivers; anything else schedules a retry after an exponentially
// growing, jittered delay, and the last attempt leaves it dead. It returns
// how many it delivered.
func (d *Dispatcher) Deliver(ctx context.Context) (int, error) {
	type due struct {
		id                int64
		eventID, url, jws string
		attempts          int
	}
	rows, err := d.cfg.DB.Pool.Query(ctx, `SELECT d.id, d.event_id::text, w.url, d.jws, d.attempts FROM webhook_deliveries d JOIN agency_webhooks w ON w.agency = d.agency
		WHERE d.state = 'pending' AND d.next_attempt_at <= now() ORDER BY d.next_attempt_at LIMIT $1`, d.cfg.Batch)
	if err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "outbox: read due deliveries", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (due, error) {
		var x due
		return x, r.Scan(&x.id, &x.eventID, &x.url, &x.jws, &x.attempts)
	})
	if err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "outbox: read due deliveries", err)
	}
	delivered := 0
	for _, x := range list {
		err := d.post(ctx, x.url, x.eventID, x.jws)
		if err == nil {
			delivered++
			_, err = d.cfg.DB.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, delivered_at = now(), last_error = NULL WHERE id = $1`, x.id)
		} else {
			attempts := x.attempts + 1
			state := "pending"
			if attempts >= d.cfg.MaxAttempts {
				state = "dead"
			}
			delay := d.cfg.Backoff << min(attempts-1, 16)
			delay += time.Duration(rand.Int64N(int64(delay)/2 + 1)) // jitter: up to half again
			_, err = d.cfg.DB.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = $2, attempts = $3, last_error = $4, next_attempt_at = now() + make_interval(secs => $5) WHERE id = $1`,
				x.id, state, attempts, kho.Truncate(err.Error(), 300), delay.Seconds())
		}
		if err != nil {
			return delivered, kho.WrapError(kho.EUNAVAILABLE, "outbox: record a delivery", err)
		}
	}
	return delivered, nil
}

func (d *Dispatcher) post(ctx context.Context, u, eventID, jws string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(jws)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/jose")
	req.Header.Set("Kho-Event-Id", eventID)
	resp, err := d.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the webhook answered %s", resp.Status)
	}
	return nil
}

// SetWebhook registers (or replaces) where an agency receives events: an
// https URL (http only when allowHTTP, for dev).
func SetWebhook(ctx context.Context, db *postgres.DB, agency kho.AgencyCode, rawURL string, allowHTTP bool) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || !(u.Scheme == "https" || (u.Scheme == "http" && allowHTTP)) {
		return kho.Errorf(kho.EINVALID, "the webhook must be an https URL")
	}
	tag, err := db.Pool.Exec(ctx, `INSERT INTO agency_webhooks (agency, url) SELECT code, $2 FROM agencies WHERE code = $1
		ON CONFLICT (agency) DO UPDATE SET url = EXCLUDED.url`, string(agency), rawURL)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "outbox: register the webhook", err)
	}
	if tag.RowsAffected() == 0 {
		return kho.Errorf(kho.ENOTFOUND, "agency %s is not registered in kho", agency)
	}
	return nil
}

// Delivery is one event's delivery, for operators.
type Delivery struct {
	ID        int64     `json:"id"`
	EventID   string    `json:"event_id"`
	Agency    string    `json:"agency"`
	Topic     string    `json:"topic"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	NextAt    time.Time `json:"next_attempt_at"`
}

// List shows deliveries in a state ("" for all), newest first.
func List(ctx context.Context, db *postgres.DB, state string, limit int) ([]Delivery, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id, event_id::text, agency, topic, state, attempts, coalesce(last_error, ''), next_attempt_at FROM webhook_deliveries
		WHERE $1 = '' OR state = $1 ORDER BY id DESC LIMIT $2`, state, limit)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "outbox: list", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var x Delivery
		return x, r.Scan(&x.ID, &x.EventID, &x.Agency, &x.Topic, &x.State, &x.Attempts, &x.LastError, &x.NextAt)
	})
}

// Replay makes a dead delivery due again, with its attempts counted anew;
// the event id stays, so a receiver that got it after all ignores it.
func Replay(ctx context.Context, db *postgres.DB, id int64) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now() WHERE id = $1 AND state = 'dead'`, id)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "outbox: replay", err)
	}
	if tag.RowsAffected() == 0 {
		return kho.Errorf(kho.ENOTFOUND, "no dead delivery %d", id)
	}
	return nil
}

// refuseInternal stops a webhook from reaching into kho's own network: a
// URL whose name resolves (now, not when it was registered) to a loopback,
// private, link-local, multicast or unspecified address is not called.
func refuseInternal(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("webhook address %q is not an IP address", host)
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return fmt.Errorf("webhook address %s is internal: kho does not deliver events inside its own network", ip)
	}
	for _, p := range internalPrefixes {
		if p.Contains(ip) {
			return fmt.Errorf("webhook address %s is internal: kho does not deliver events inside its own network", ip)
		}
	}
	return nil
}

// internalPrefixes are ranges Go's address checks pass that still lead
// inside: shared and benchmarking space, IETF and reserved blocks, and
// IPv6 forms that embed an IPv4 address (NAT64, 6to4, IPv4-compatible)
// or are site-local.
var internalPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "240.0.0.0/4", "::/96", "::ffff:0:0:0/96", "100::/64", "192.88.99.0/24", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "2001:db8::/32", "fec0::/10", "fc00::/7"} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// RemoveWebhook stops events to an agency: what is already queued for it
// waits, and goes out if a webhook is registered again.
func RemoveWebhook(ctx context.Context, db *postgres.DB, agency kho.AgencyCode) error {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM agency_webhooks WHERE agency = $1`, string(agency))
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "outbox: remove the webhook", err)
	}
	if tag.RowsAffected() == 0 {
		return kho.Errorf(kho.ENOTFOUND, "agency %s has no webhook", agency)
	}
	return nil
}
