package consent

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
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

// load reads a consent the caller may see: the subject's side (self,
// guardian, representative) or the grantee agency.
func (s *Service) load(ctx context.Context, q postgres.RowQuerier, p kho.Principal, id string, forUpdate bool) (*Consent, bool, error) {
	notFound := kho.Errorf(kho.ENOTFOUND, "no such consent")
	if _, err := uuid.Parse(id); err != nil {
		return nil, false, notFound
	}
	sql := `SELECT ` + consentColumns + `, s.id FROM consents c JOIN subjects s ON s.handle = c.subject_handle WHERE c.id = $1`
	if forUpdate {
		sql += ` FOR UPDATE OF c`
	}
	var owner kho.SubjectID
	var c Consent
	err := q.QueryRow(ctx, sql, id).Scan(&c.ID, &c.Subject, &c.Grantee, &c.Procedure, &c.Purpose, &c.DocumentTypes, &c.DocumentIDs, &c.ValidFrom, &c.ValidUntil,
		&c.Mode, &c.MaxUses, &c.Uses, &c.DataLifeDays, &c.Channel, &c.Status, &c.GrantedBy, &c.RequestID, &owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, notFound
	}
	if err != nil {
		return nil, false, kho.WrapError(kho.EUNAVAILABLE, "consent: read consent", err)
	}
	if (p.Kind == kho.PrincipalAgency || p.Kind == kho.PrincipalAgencyOfficer) && p.Agency == c.Grantee {
		return &c, false, nil
	}
	// The subject's side: themself, a guardian of theirs, or a representative.
	if sub, ok := p.ActsFor(); ok && sub == owner {
		return &c, true, nil
	}
	if p.Kind == kho.PrincipalCitizen {
		if _, _, err := s.actingFor(ctx, p, "", owner); err == nil {
			return &c, true, nil
		}
	}
	return nil, false, notFound
}

// Get returns a consent with its history to its subject's side or grantee.
func (s *Service) Get(ctx context.Context, p kho.Principal, id string) (*Consent, error) {
	c, _, err := s.load(ctx, s.db.Pool, p, id, false)
	if err != nil {
		return nil, err
	}
	if err := s.history(ctx, c); err != nil {
		return nil, err
	}
	c.Status = c.effectiveStatus(s.now())
	return c, nil
}

// List returns the consents of the caller's store (or of a ward's).
func (s *Service) List(ctx context.Context, p kho.Principal, onBehalfOf kho.SubjectID) ([]*Consent, error) {
	h, _, err := s.actingFor(ctx, p, "", onBehalfOf)
	if kho.ErrorCode(err) == kho.ENOTFOUND {
		return []*Consent{}, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT `+consentColumns+` FROM consents c WHERE c.subject_handle = $1 ORDER BY c.created_at DESC LIMIT 500`, h)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list", err)
	}
	out := []*Consent{}
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
	return out, rows.Err()
}

// Receipt returns the latest receipt of a consent: a compact JWS of the
// artefact as it stood after its last change.
func (s *Service) Receipt(ctx context.Context, p kho.Principal, id string) (string, error) {
	if _, _, err := s.load(ctx, s.db.Pool, p, id, false); err != nil {
		return "", err
	}
	var r string
	if err := s.db.Pool.QueryRow(ctx, `SELECT receipt FROM consent_history WHERE consent_id = $1 ORDER BY seq DESC LIMIT 1`, id).Scan(&r); err != nil {
		return "", kho.WrapError(kho.EUNAVAILABLE, "consent: read receipt", err)
	}
	return r, nil
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
	var c *Consent
	var w *Withdrawal
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		var subjectSide bool
		var err error
		c, subjectSide, err = s.load(ctx, tx, p, id, true)
		if err != nil {
			return err
		}
		if !subjectSide {
			return kho.Errorf(kho.EFORBIDDEN, "only the subject's side may change a consent")
		}
		if eff := c.effectiveStatus(s.now()); eff == Expired && status != Revoked {
			return kho.Errorf(kho.ECONFLICT, "the consent has expired")
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
		action := map[string]string{Paused: "consent.paused", Active: "consent.resumed", Revoked: "consent.revoked"}[status]
		// The subject's free-text reason stays in the consent's history: free
		// text may carry personal data, which the audit trail never holds.
		if err := audit.Record(ctx, tx, audit.Event{Action: action, Outcome: audit.Success, Actor: p, Subject: c.Subject, Purpose: c.Procedure, ConsentID: c.ID}); err != nil {
			return err
		}
		return notify(ctx, tx, action, c.Subject, map[string]any{"consent_id": c.ID, "agency": c.Grantee})
	})
	if err != nil {
		return nil, nil, err
	}
	return c, w, nil
}
