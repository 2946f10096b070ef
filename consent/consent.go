// Package consent keeps citizens' and businesses' consents to the reuse of
// their documents, and decides agencies' fetches. A consent is an artefact
// modelled on India's Account Aggregator consent artefact and ISO/IEC TS
// 27560 consent records: one grantee, one purpose (a procedure), chosen
// document types or documents, a validity period, once or standing with a
// use limit, a data life for copies, a channel, a status with its history;
// never pre-ticked, never bundled. On grant and on every status change the
// subject gets a receipt: a compact JWS of the artefact signed with a Vault
// Transit key whose public keys are at /.well-known/jwks.json.
//
// Fetch decisions combine the reuse policy (package policies, Cedar), an
// active consent with uses left or a legal basis, and the document's
// validity. Nothing is cached: a pause or revocation takes effect on the very
// next request because every decision reads PostgreSQL.
//
// consent imports the root, postgres, policies and audit packages.
package consent

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/policies"
	"kho/postgres"
)

// Statuses of a consent. Expired is not stored: an active consent past its
// validity is reported as expired.
const (
	Active  = "active"
	Paused  = "paused"
	Revoked = "revoked"
	Expired = "expired"
)

// Receipt signing key (Transit, on kho-signing) and JWS type.
const (
	ReceiptKey  = "consent-receipt"
	ReceiptType = "kho-consent-receipt+jws"
)

// Signer signs receipts; *vault.Transit meets it.
type Signer interface {
	SignCompact(ctx context.Context, key string, payload []byte, typ string) (string, error)
}

// Service keeps consents and decides fetches.
type Service struct {
	db     *postgres.DB
	engine *policies.Engine
	signer Signer
	now    func() time.Time
}

var _ kho.ReuseDecider = (*Service)(nil)

// New validates its arguments.
func New(db *postgres.DB, engine *policies.Engine, signer Signer) (*Service, error) {
	if db == nil || engine == nil || signer == nil {
		return nil, kho.Errorf(kho.EINVALID, "consent: a database, a policy engine and a receipt signer are required")
	}
	return &Service{db: db, engine: engine, signer: signer, now: time.Now}, nil
}

// Terms are what a consent grants, as asked in a request or given directly.
type Terms struct {
	SubjectID     kho.SubjectID    `json:"subject_id,omitempty"`
	Grantee       kho.AgencyCode   `json:"grantee,omitempty"`
	Procedure     string           `json:"procedure"`
	Purpose       string           `json:"purpose"`
	DocumentTypes []string         `json:"document_types"`
	DocumentIDs   []kho.DocumentID `json:"document_ids,omitempty"`
	ValidUntil    time.Time        `json:"valid_until"`
	Mode          string           `json:"mode"` // once or standing
	MaxUses       *int             `json:"max_uses,omitempty"`
	DataLifeDays  int              `json:"data_life_days"`
}

// Consent is the artefact.
type Consent struct {
	ID            string            `json:"id"`
	Subject       kho.SubjectHandle `json:"subject"`
	Grantee       kho.AgencyCode    `json:"grantee"`
	Procedure     string            `json:"procedure"`
	Purpose       string            `json:"purpose"`
	DocumentTypes []string          `json:"document_types"`
	DocumentIDs   []string          `json:"document_ids,omitempty"`
	ValidFrom     time.Time         `json:"valid_from"`
	ValidUntil    time.Time         `json:"valid_until"`
	Mode          string            `json:"mode"`
	MaxUses       *int              `json:"max_uses,omitempty"`
	Uses          int               `json:"uses"`
	DataLifeDays  int               `json:"data_life_days"`
	Channel       string            `json:"channel"`
	Status        string            `json:"status"`
	GrantedBy     string            `json:"granted_by"`
	RequestID     string            `json:"request_id,omitempty"`
	History       []Change          `json:"history"`
}

// Change is one status change of a consent.
type Change struct {
	At        time.Time `json:"at"`
	Status    string    `json:"status"`
	ActorKind string    `json:"actor_kind"`
	ActorRef  string    `json:"actor_ref,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// effectiveStatus reports expired for an active consent past its validity.
func (c *Consent) effectiveStatus(now time.Time) string {
	if c.Status == Active && !now.Before(c.ValidUntil) {
		return Expired
	}
	return c.Status
}

// validate checks terms against the catalogue's procedure.
func (t *Terms) validate(now time.Time, proc *policies.Procedure) error {
	if n := utf8.RuneCountInString(strings.TrimSpace(t.Purpose)); n < 10 || n > 500 {
		return kho.Errorf(kho.EINVALID, "the purpose must be stated in 10 to 500 characters")
	}
	if len(t.DocumentTypes) == 0 {
		return kho.Errorf(kho.EINVALID, "a consent names the document types it covers; none is implied")
	}
	for _, dt := range t.DocumentTypes {
		if !slices.Contains(proc.Types(), dt) {
			return kho.Errorf(kho.EINVALID, "procedure %s does not use document type %s: one purpose per consent", proc.Code, dt)
		}
	}
	for _, id := range t.DocumentIDs {
		if id.Validate() != nil {
			return kho.Errorf(kho.EINVALID, "document_ids must be document ids")
		}
	}
	if !t.ValidUntil.After(now) || t.ValidUntil.After(now.AddDate(1, 0, 1)) {
		return kho.Errorf(kho.EINVALID, "valid_until must be in the future and at most one year away")
	}
	switch t.Mode {
	case "once":
		one := 1
		if t.MaxUses != nil && *t.MaxUses != 1 {
			return kho.Errorf(kho.EINVALID, "a one-time consent is used once")
		}
		t.MaxUses = &one
	case "standing":
		if t.MaxUses != nil && (*t.MaxUses < 1 || *t.MaxUses > 10000) {
			return kho.Errorf(kho.EINVALID, "max_uses must be between 1 and 10000")
		}
	default:
		return kho.Errorf(kho.EINVALID, "mode must be once or standing")
	}
	if t.DataLifeDays < 0 || t.DataLifeDays > 3650 {
		return kho.Errorf(kho.EINVALID, "data_life_days must be between 0 and 3650")
	}
	return nil
}

// procedure reads a procedure from the catalogue in PostgreSQL.
func procedure(ctx context.Context, q postgres.RowQuerier, code string) (*policies.Procedure, error) {
	p := &policies.Procedure{Code: code}
	err := q.QueryRow(ctx, `SELECT p.name_vi, p.name_en, p.handler_kinds,
			coalesce(array_agg(t.document_type_code ORDER BY t.document_type_code) FILTER (WHERE t.required), '{}'),
			coalesce(array_agg(t.document_type_code ORDER BY t.document_type_code) FILTER (WHERE NOT t.required), '{}')
		FROM procedures p LEFT JOIN procedure_document_types t ON t.procedure_code = p.code
		WHERE p.code = $1 GROUP BY p.code`, code).Scan(&p.NameVI, &p.NameEN, &p.HandlerKinds, &p.Requires, &p.Optional)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, kho.Refusal(kho.EINVALID, "unknown_procedure", "procedure %s is not in the catalogue", code)
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read catalogue", err)
	}
	return p, nil
}

func agencyKind(ctx context.Context, db *postgres.DB, code kho.AgencyCode) (string, error) {
	var kind string
	err := db.Pool.QueryRow(ctx, `SELECT kind FROM agencies WHERE code = $1`, string(code)).Scan(&kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", kho.Errorf(kho.EFORBIDDEN, "agency %s is not registered in kho", code)
	}
	if err != nil {
		return "", kho.WrapError(kho.EUNAVAILABLE, "consent: read agency", err)
	}
	return kind, nil
}

// subject resolves a subject id to its store.
func (s *Service) subject(ctx context.Context, id kho.SubjectID) (kho.SubjectHandle, error) {
	if err := id.Validate(); err != nil {
		return "", err
	}
	var h kho.SubjectHandle
	err := s.db.Pool.QueryRow(ctx, `SELECT handle FROM subjects WHERE id = $1 AND erased_at IS NULL`, id).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", kho.Errorf(kho.ENOTFOUND, "no such store")
	}
	if err != nil {
		return "", kho.WrapError(kho.EUNAVAILABLE, "consent: read subject", err)
	}
	return h, nil
}

// actingFor checks that p may decide about the consents of subjectID's store,
// and says in which capacity: self, guardian, legal_representative or
// authorised.
func (s *Service) actingFor(ctx context.Context, p kho.Principal, subjectID kho.SubjectID, onBehalfOf kho.SubjectID) (kho.SubjectHandle, string, error) {
	deny := kho.Errorf(kho.EFORBIDDEN, "only the subject, their guardian or a business's representative may decide about its consents")
	switch p.Kind {
	case kho.PrincipalCitizen:
		if onBehalfOf == "" || onBehalfOf == p.Person {
			if subjectID != "" && subjectID != p.Person {
				return "", "", deny
			}
			h, err := s.subject(ctx, p.Person)
			return h, "self", err
		}
		if subjectID != "" && subjectID != onBehalfOf {
			return "", "", deny
		}
		var ward kho.SubjectHandle
		err := s.db.Pool.QueryRow(ctx, `SELECT w.handle FROM guardianships g
			JOIN subjects gs ON gs.handle = g.guardian_handle JOIN subjects w ON w.handle = g.ward_handle
			WHERE gs.id = $1 AND w.id = $2 AND (g.valid_until IS NULL OR g.valid_until >= current_date)`, p.Person, onBehalfOf).Scan(&ward)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", "", deny
		}
		if err != nil {
			return "", "", kho.WrapError(kho.EUNAVAILABLE, "consent: read guardianship", err)
		}
		return ward, "guardian", nil
	case kho.PrincipalBusinessRep:
		if subjectID != "" && subjectID != p.Business {
			return "", "", deny
		}
		var h kho.SubjectHandle
		var role string
		err := s.db.Pool.QueryRow(ctx, `SELECT b.handle, r.role FROM business_representatives r
			JOIN subjects b ON b.handle = r.business_handle JOIN subjects pe ON pe.handle = r.person_handle
			WHERE b.id = $1 AND pe.id = $2 AND r.valid_from <= now() AND (r.valid_until IS NULL OR r.valid_until > now())`,
			p.Business, p.Person).Scan(&h, &role)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", "", deny
		}
		if err != nil {
			return "", "", kho.WrapError(kho.EUNAVAILABLE, "consent: read representation", err)
		}
		return h, role, nil
	}
	return "", "", deny
}

// Request is an agency's request for consent.
type Request struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Agency    string    `json:"agency"`
	Terms     Terms     `json:"terms"`
	Status    string    `json:"status"`
	ConsentID string    `json:"consent_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// RequestConsent lets an agency ask a subject for consent: what, why, for how
// long. The subject is notified through the outbox.
func (s *Service) RequestConsent(ctx context.Context, p kho.Principal, t Terms) (*Request, error) {
	if p.Kind != kho.PrincipalAgency && p.Kind != kho.PrincipalAgencyOfficer {
		return nil, kho.Errorf(kho.EFORBIDDEN, "only an agency may request consent")
	}
	kind, err := agencyKind(ctx, s.db, p.Agency)
	if err != nil {
		return nil, err
	}
	proc, err := procedure(ctx, s.db.Pool, t.Procedure)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(proc.HandlerKinds, kind) {
		return nil, kho.Refusal(kho.EFORBIDDEN, "not_handler", "agency %s does not handle procedure %s", p.Agency, proc.Code)
	}
	if err := t.validate(s.now(), proc); err != nil {
		return nil, err
	}
	h, err := s.subject(ctx, t.SubjectID)
	if err != nil {
		return nil, err
	}
	r := &Request{ID: uuid.NewString(), Subject: string(h), Agency: string(p.Agency), Status: "pending", CreatedAt: s.now()}
	t.SubjectID, t.Grantee = "", p.Agency
	r.Terms = t
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO consent_requests (id, subject_handle, agency, procedure_code, purpose, document_types, valid_until, mode, max_uses, data_life_days, status)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending')`,
			r.ID, h, string(p.Agency), proc.Code, t.Purpose, t.DocumentTypes, t.ValidUntil, t.Mode, t.MaxUses, t.DataLifeDays); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: store request", err)
		}
		if err := audit.Record(ctx, tx, audit.Event{Action: "consent.requested", Outcome: audit.Success, Actor: p, Subject: h, Purpose: proc.Code,
			Details: map[string]any{"request_id": r.ID, "types": t.DocumentTypes}}); err != nil {
			return err
		}
		return notify(ctx, tx, "consent.requested", h, map[string]any{"request_id": r.ID, "agency": p.Agency, "procedure": proc.Code})
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Requests lists requests: an agency's own, or those to the caller's store.
func (s *Service) Requests(ctx context.Context, p kho.Principal) ([]Request, error) {
	var where string
	var arg any
	switch p.Kind {
	case kho.PrincipalAgency, kho.PrincipalAgencyOfficer:
		where, arg = "r.agency = $1", string(p.Agency)
	default:
		sub, ok := p.ActsFor()
		if !ok {
			return nil, kho.Errorf(kho.EFORBIDDEN, "only agencies and subjects have consent requests")
		}
		h, err := s.subject(ctx, sub)
		if kho.ErrorCode(err) == kho.ENOTFOUND {
			return []Request{}, nil
		}
		if err != nil {
			return nil, err
		}
		where, arg = "r.subject_handle = $1", string(h)
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT r.id, r.subject_handle, r.agency, r.procedure_code, r.purpose, r.document_types, r.valid_until, r.mode,
		r.max_uses, r.data_life_days, r.status, coalesce(r.consent_id::text, ''), r.created_at FROM consent_requests r WHERE `+where+` ORDER BY r.created_at DESC LIMIT 200`, arg)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list requests", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Request, error) {
		var r Request
		err := row.Scan(&r.ID, &r.Subject, &r.Agency, &r.Terms.Procedure, &r.Terms.Purpose, &r.Terms.DocumentTypes, &r.Terms.ValidUntil,
			&r.Terms.Mode, &r.Terms.MaxUses, &r.Terms.DataLifeDays, &r.Status, &r.ConsentID, &r.CreatedAt)
		r.Terms.Grantee = kho.AgencyCode(r.Agency)
		return r, err
	})
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list requests", err)
	}
	return out, nil
}

// Answer approves (creating the consent) or denies a pending request.
// onBehalfOf names a ward when a guardian answers.
func (s *Service) Answer(ctx context.Context, p kho.Principal, requestID string, approve bool, onBehalfOf kho.SubjectID) (*Consent, error) {
	if _, err := uuid.Parse(requestID); err != nil {
		return nil, kho.Errorf(kho.ENOTFOUND, "no such consent request")
	}
	h, capacity, err := s.actingFor(ctx, p, "", onBehalfOf)
	if err != nil {
		return nil, err
	}
	var c *Consent
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		var t Terms
		var status, agency string
		err := tx.QueryRow(ctx, `SELECT agency, procedure_code, purpose, document_types, valid_until, mode, max_uses, data_life_days, status
			FROM consent_requests WHERE id = $1 AND subject_handle = $2 FOR UPDATE`, requestID, h).
			Scan(&agency, &t.Procedure, &t.Purpose, &t.DocumentTypes, &t.ValidUntil, &t.Mode, &t.MaxUses, &t.DataLifeDays, &status)
		if errors.Is(err, pgx.ErrNoRows) {
			return kho.Errorf(kho.ENOTFOUND, "no such consent request")
		}
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: read request", err)
		}
		if status != "pending" {
			return kho.Errorf(kho.ECONFLICT, "the request was already answered (%s)", status)
		}
		t.Grantee = kho.AgencyCode(agency)
		if !approve {
			if _, err := tx.Exec(ctx, `UPDATE consent_requests SET status = 'denied', decided_at = now() WHERE id = $1`, requestID); err != nil {
				return kho.WrapError(kho.EUNAVAILABLE, "consent: deny request", err)
			}
			if err := audit.Record(ctx, tx, audit.Event{Action: "consent.request_denied", Outcome: audit.Success, Actor: p, Subject: h, Purpose: t.Procedure,
				Details: map[string]any{"request_id": requestID, "agency": agency}}); err != nil {
				return err
			}
			return notify(ctx, tx, "consent.request_denied", h, map[string]any{"request_id": requestID, "agency": agency})
		}
		if !t.ValidUntil.After(s.now()) {
			return kho.Errorf(kho.ECONFLICT, "the request asked for a consent that would already have expired")
		}
		c, err = s.create(ctx, tx, p, h, capacity, t, "request", requestID)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE consent_requests SET status = 'approved', consent_id = $2, decided_at = now() WHERE id = $1`, requestID, c.ID)
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: approve request", err)
		}
		return nil
	})
	return c, err
}

// Grant lets a subject (or their guardian or representative) give a consent
// directly, without a request.
func (s *Service) Grant(ctx context.Context, p kho.Principal, t Terms, onBehalfOf kho.SubjectID) (*Consent, error) {
	h, capacity, err := s.actingFor(ctx, p, t.SubjectID, onBehalfOf)
	if err != nil {
		return nil, err
	}
	if err := t.Grantee.Validate(); err != nil {
		return nil, kho.Errorf(kho.EINVALID, "grantee must be an agency code")
	}
	if _, err := agencyKind(ctx, s.db, t.Grantee); err != nil {
		return nil, kho.Errorf(kho.EINVALID, "grantee %s is not a registered agency", t.Grantee)
	}
	proc, err := procedure(ctx, s.db.Pool, t.Procedure)
	if err != nil {
		return nil, err
	}
	if err := t.validate(s.now(), proc); err != nil {
		return nil, err
	}
	var c *Consent
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		c, err = s.create(ctx, tx, p, h, capacity, t, "portal", "")
		return err
	})
	return c, err
}

// create inserts an active consent with its first history entry and receipt.
func (s *Service) create(ctx context.Context, tx pgx.Tx, p kho.Principal, h kho.SubjectHandle, capacity string, t Terms, channel, requestID string) (*Consent, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	c := &Consent{
		ID: uuid.NewString(), Subject: h, Grantee: t.Grantee, Procedure: t.Procedure, Purpose: strings.TrimSpace(t.Purpose),
		DocumentTypes: t.DocumentTypes, ValidFrom: now, ValidUntil: t.ValidUntil.UTC().Truncate(time.Microsecond), Mode: t.Mode, MaxUses: t.MaxUses,
		DataLifeDays: t.DataLifeDays, Channel: channel, Status: Active, GrantedBy: capacity, RequestID: requestID,
	}
	for _, id := range t.DocumentIDs {
		c.DocumentIDs = append(c.DocumentIDs, string(id))
	}
	var req any
	if requestID != "" {
		req = requestID
	}
	if c.DocumentIDs == nil {
		c.DocumentIDs = []string{}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO consents (id, subject_handle, grantee, procedure_code, purpose, document_types, document_ids, valid_from, valid_until,
		mode, max_uses, data_life_days, channel, status, granted_by, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7::uuid[], $8, $9, $10, $11, $12, $13, 'active', $14, $15)`,
		c.ID, h, string(c.Grantee), c.Procedure, c.Purpose, c.DocumentTypes, c.DocumentIDs, c.ValidFrom, c.ValidUntil,
		c.Mode, c.MaxUses, c.DataLifeDays, c.Channel, c.GrantedBy, req); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: store consent", err)
	}
	if err := s.changed(ctx, tx, p, c, Active, ""); err != nil {
		return nil, err
	}
	if err := audit.Record(ctx, tx, audit.Event{Action: "consent.granted", Outcome: audit.Success, Actor: p, Subject: h, Purpose: c.Procedure, ConsentID: c.ID,
		Details: map[string]any{"grantee": c.Grantee, "types": c.DocumentTypes, "granted_by": capacity}}); err != nil {
		return nil, err
	}
	return c, notify(ctx, tx, "consent.granted", h, map[string]any{"consent_id": c.ID, "agency": c.Grantee})
}

// changed appends a history entry with a fresh receipt of the artefact.
func (s *Service) changed(ctx context.Context, tx pgx.Tx, p kho.Principal, c *Consent, status, reason string) error {
	ch := Change{At: s.now().UTC().Truncate(time.Microsecond), Status: status, ActorKind: string(p.Kind), ActorRef: p.TokenID, Reason: reason}
	c.History = append(c.History, ch)
	c.Status = status
	payload, err := json.Marshal(c)
	if err != nil {
		return kho.WrapError(kho.EINTERNAL, "consent: encode receipt", err)
	}
	receipt, err := s.signer.SignCompact(ctx, ReceiptKey, payload, ReceiptType)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO consent_history (consent_id, seq, at, status, actor_kind, actor_ref, reason, receipt)
		VALUES ($1, (SELECT coalesce(max(seq), 0) + 1 FROM consent_history WHERE consent_id = $1), $2, $3, $4, $5, $6, $7)`,
		c.ID, ch.At, status, ch.ActorKind, ch.ActorRef, reason, receipt)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "consent: record change", err)
	}
	return nil
}

func notify(ctx context.Context, tx pgx.Tx, topic string, h kho.SubjectHandle, payload map[string]any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return kho.WrapError(kho.EINTERNAL, "consent: encode notification", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (topic, subject_handle, payload) VALUES ($1, $2, $3)`, topic, h, b); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "consent: queue notification", err)
	}
	return nil
}
