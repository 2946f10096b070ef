package consent

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/policies"
	"kho/postgres"
)

const consentColumns = `c.id, c.subject_handle, c.grantee, c.procedure_code, c.purpose, c.document_types, c.document_ids::text[], c.valid_from, c.valid_until,
	c.mode, c.max_uses, c.uses, c.data_life_days, c.channel, c.status, c.granted_by, coalesce(c.request_id::text, '')`

func scanConsent(row pgx.Row) (*Consent, error) {
	var c Consent
	err := row.Scan(&c.ID, &c.Subject, &c.Grantee, &c.Procedure, &c.Purpose, &c.DocumentTypes, &c.DocumentIDs, &c.ValidFrom, &c.ValidUntil,
		&c.Mode, &c.MaxUses, &c.Uses, &c.DataLifeDays, &c.Channel, &c.Status, &c.GrantedBy, &c.RequestID)
	return &c, err
}

func (s *Service) history(ctx context.Context, c *Consent) error {
	rows, err := s.db.Pool.Query(ctx, `SELECT at, status, actor_kind, coalesce(actor_ref, ''), coalesce(reason, '') FROM consent_history WHERE consent_id = $1 ORDER BY seq`, c.ID)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "consent: read history", err)
	}
	c.History, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Change, error) {
		var ch Change
		return ch, r.Scan(&ch.At, &ch.Status, &ch.ActorKind, &ch.ActorRef, &ch.Reason)
	})
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "consent: read history", err)
	}
	return nil
}

// load reads a consent and asks Authorize whether p may do a to it: read it
// (the subject's side or the grantee) or decide about it (the subject's side
// only). A refusal is recorded against the consent's store; a consent p may
// not know of is answered as one that does not exist.
func (s *Service) load(ctx context.Context, q postgres.RowQuerier, p kho.Principal, id string, a policies.Action, forUpdate bool) (*Consent, *policies.Store, error) {
	var c *Consent
	var st *policies.Store
	if kho.CanonicalUUID(id) {
		sql := `SELECT ` + consentColumns + `, ` + postgres.StoreColumns("$2") + ` FROM consents c JOIN subjects s ON s.handle = c.subject_handle WHERE c.id = $1`
		if forUpdate {
			sql += ` FOR UPDATE OF c`
		}
		var x postgres.StoreScan
		var cc Consent
		dest := append([]any{&cc.ID, &cc.Subject, &cc.Grantee, &cc.Procedure, &cc.Purpose, &cc.DocumentTypes, &cc.DocumentIDs, &cc.ValidFrom, &cc.ValidUntil,
			&cc.Mode, &cc.MaxUses, &cc.Uses, &cc.DataLifeDays, &cc.Channel, &cc.Status, &cc.GrantedBy, &cc.RequestID}, x.Targets()...)
		err := q.QueryRow(ctx, sql, id, postgres.Person(p)).Scan(dest...)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return nil, nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read consent", err)
		default:
			c, st = &cc, x.Store(p)
		}
	}
	r := policies.Resource{Store: st}
	if c != nil {
		r.Grantee = c.Grantee
	}
	event := audit.ConsentRead
	if a == policies.DecideConsent {
		event = audit.ConsentRevoked
	}
	d := policies.Authorize(p, a, r)
	if c == nil && d.Allowed {
		d = policies.Authorize(p, policies.ReadConsent, policies.Resource{})
	}
	if !d.Allowed {
		ev := audit.Event{Action: event, Outcome: audit.Denied, Actor: p, Reason: d.Reason}
		if c != nil {
			ev.Subject, ev.ConsentID = c.Subject, c.ID
		}
		if err := audit.RecordNow(ctx, s.db, ev); err != nil {
			return nil, nil, err
		}
		if d.Code == kho.ENOTFOUND {
			return nil, nil, kho.Refusal(kho.ENOTFOUND, policies.ReasonNotFound, "consent not found")
		}
		return nil, nil, d.Err()
	}
	return c, st, nil
}

// Get returns a consent with its history to its subject's side or grantee,
// and records the reading.
func (s *Service) Get(ctx context.Context, p kho.Principal, id string) (*Consent, error) {
	c, st, err := s.load(ctx, s.db.Pool, p, id, policies.ReadConsent, false)
	if err != nil {
		return nil, err
	}
	if err := s.history(ctx, c); err != nil {
		return nil, err
	}
	c.Status = c.effectiveStatus(s.now())
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.ConsentRead, Outcome: audit.Success, Actor: p, Subject: c.Subject, ConsentID: c.ID,
		ActingFor: st.ActingFor()}); err != nil {
		return nil, err
	}
	return c, nil
}

// List returns the consents of the caller's store (or, with onBehalfOf, of
// a ward's or a represented business's: a current delegation, or refused).
func (s *Service) List(ctx context.Context, p kho.Principal, onBehalfOf kho.SubjectID) ([]*Consent, error) {
	st, err := s.ownStore(ctx, p, "", onBehalfOf, audit.ConsentsListed)
	if err != nil {
		return nil, err
	}
	out := []*Consent{}
	if !st.Exists {
		return out, nil
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT `+consentColumns+` FROM consents c WHERE c.subject_handle = $1 ORDER BY c.created_at DESC LIMIT 500`, st.Handle)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list", err)
	}
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			rows.Close()
			return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list", err)
		}
		c.Status = c.effectiveStatus(s.now())
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list", err)
	}
	return out, nil
}

// Receipt returns the latest receipt of a consent: a compact JWS of the
// artefact as it stood after its last change. The reading is recorded.
func (s *Service) Receipt(ctx context.Context, p kho.Principal, id string) (string, error) {
	c, st, err := s.load(ctx, s.db.Pool, p, id, policies.ReadConsent, false)
	if err != nil {
		return "", err
	}
	var r string
	if err := s.db.Pool.QueryRow(ctx, `SELECT receipt FROM consent_history WHERE consent_id = $1 ORDER BY seq DESC LIMIT 1`, id).Scan(&r); err != nil {
		return "", kho.WrapError(kho.EUNAVAILABLE, "consent: read receipt", err)
	}
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.ConsentRead, Outcome: audit.Success, Actor: p, Subject: c.Subject, ConsentID: c.ID,
		ActingFor: st.ActingFor(), Details: map[string]any{"receipt": true}}); err != nil {
		return "", err
	}
	return r, nil
}

// EraseStore revokes every active or paused consent of an erased store, each
// with a receipt, and withdraws its pending requests, in the erasure's
// transaction. It returns how many consents it revoked.
func (s *Service) EraseStore(ctx context.Context, tx pgx.Tx, p kho.Principal, h kho.SubjectHandle) (int, error) {
	rows, err := tx.Query(ctx, `SELECT `+consentColumns+` FROM consents c WHERE c.subject_handle = $1 AND c.status IN ('active', 'paused') FOR UPDATE`, h)
	if err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "consent: read consents to revoke", err)
	}
	var cs []*Consent
	for rows.Next() {
		c, err := scanConsent(rows)
		if err != nil {
			rows.Close()
			return 0, kho.WrapError(kho.EUNAVAILABLE, "consent: read consents to revoke", err)
		}
		cs = append(cs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "consent: read consents to revoke", err)
	}
	for _, c := range cs {
		if _, err := tx.Exec(ctx, `UPDATE consents SET status = 'revoked' WHERE id = $1`, c.ID); err != nil {
			return 0, kho.WrapError(kho.EUNAVAILABLE, "consent: revoke", err)
		}
		if err := s.history(ctx, c); err != nil {
			return 0, err
		}
		if err := s.changed(ctx, tx, p, c, Revoked, "store erased"); err != nil {
			return 0, err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE consent_requests SET status = 'withdrawn', decided_at = now() WHERE subject_handle = $1 AND status = 'pending'`, h); err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "consent: withdraw requests", err)
	}
	return len(cs), nil
}

// Withdrawal says what revoking a consent stops.
type Withdrawal struct {
	ConsentID     string   `json:"consent_id"`
	Grantee       string   `json:"grantee"`
	Procedure     string   `json:"procedure"`
	DocumentTypes []string `json:"document_types"`
	UsesLeft      *int     `json:"uses_left,omitempty"` // nil: unlimited until valid_until
	ValidUntil    string   `json:"valid_until"`
	DataLifeDays  int      `json:"data_life_days"`
	Effect        string   `json:"effect"`
}

// Transitions of a consent's status.
var transitions = map[string]struct{ from []string }{
	Paused:  {from: []string{Active}},
	Active:  {from: []string{Paused}},
	Revoked: {from: []string{Active, Paused}},
}

// SetStatus pauses, resumes or revokes a consent. It takes effect on the very
// next fetch: decisions read the consent's row every time. With preview set,
// it changes nothing and says what revoking would stop.
func (s *Service) SetStatus(ctx context.Context, p kho.Principal, id, status, reason string, preview bool) (*Consent, *Withdrawal, error) {
	t, ok := transitions[status]
	if !ok {
		return nil, nil, kho.Errorf(kho.EINVALID, "status must be paused, active or revoked")
	}
	reason = strings.TrimSpace(reason)
	if utf8.RuneCountInString(reason) > 1000 || !kho.PlainText(reason, true) {
		return nil, nil, kho.FieldErrorf("reason", "the reason must be at most 1000 characters of plain text (no control or invisible characters)")
	}
	var c *Consent
	var w *Withdrawal
	var actedFor string
	var refusedWard *policies.Store
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		var st *policies.Store
		c, st, err = s.load(ctx, tx, p, id, policies.DecideConsent, true)
		if err != nil {
			return err
		}
		actedFor = st.ActingFor()
		// Either party may withdraw a ward's consent (pause, revoke) on
		// their own; making it active again is giving it again, which needs
		// every party a new consent needs.
		if status == Active && st.Ward {
			if err := wardGrantRefusal(st); err != nil {
				refusedWard = st
				return err
			}
		}
		if eff := c.effectiveStatus(s.now()); eff == Expired && status != Revoked {
			return kho.Errorf(kho.ECONFLICT, "the consent has expired")
		} else if eff == UsedUp && status != Revoked {
			return kho.Errorf(kho.ECONFLICT, "the consent has no uses left")
		}
		allowed := false
		for _, f := range t.from {
			allowed = allowed || c.Status == f
		}
		if !allowed {
			return kho.Errorf(kho.ECONFLICT, "a %s consent cannot become %s", c.Status, status)
		}
		if status == Revoked {
			w = &Withdrawal{ConsentID: c.ID, Grantee: string(c.Grantee), Procedure: c.Procedure, DocumentTypes: c.DocumentTypes,
				ValidUntil: c.ValidUntil.Format("2006-01-02"), DataLifeDays: c.DataLifeDays,
				Effect: "agency " + string(c.Grantee) + " can no longer fetch these documents for " + c.Procedure + "; copies it already made must be deleted within the data life"}
			if c.MaxUses != nil {
				left := *c.MaxUses - c.Uses
				w.UsesLeft = &left
			}
			if preview {
				return nil
			}
		} else if preview {
			return kho.Errorf(kho.EINVALID, "a preview is for revocation only")
		}
		if _, err := tx.Exec(ctx, `UPDATE consents SET status = $2 WHERE id = $1`, c.ID, status); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: change status", err)
		}
		if err := s.history(ctx, c); err != nil {
			return err
		}
		if err := s.changed(ctx, tx, p, c, status, reason); err != nil {
			return err
		}
		action := map[string]string{Paused: audit.ConsentPaused, Active: audit.ConsentResumed, Revoked: audit.ConsentRevoked}[status]
		// The subject's free-text reason stays in the consent's history: free
		// text may carry personal data, which the audit trail never holds.
		if err := audit.Record(ctx, tx, audit.Event{Action: action, Outcome: audit.Success, Actor: p, Subject: c.Subject, Purpose: c.Procedure, ConsentID: c.ID,
			ActingFor: actedFor}); err != nil {
			return err
		}
		return notify(ctx, tx, action, c.Subject, map[string]any{"consent_id": c.ID, "agency": c.Grantee})
	})
	if refusedWard != nil {
		return nil, nil, s.recordRefusal(ctx, p, audit.ConsentResumed, refusedWard, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return c, w, nil
}
