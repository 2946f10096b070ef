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

// Statuses of a consent. Expired and UsedUp are not stored: an active
// consent past its validity is reported as expired, and one whose uses are
// all spent as used up.
const (
	Active  = "active"
	Paused  = "paused"
	Revoked = "revoked"
	Expired = "expired"
	UsedUp  = "used_up"
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
	db         *postgres.DB
	engine     *policies.Engine
	signer     Signer
	now        func() time.Time
	controller Controller
	issuer     string
}

var _ kho.ReuseDecider = (*Service)(nil)

// Controller is who answers for the processing a consent allows (ISO/IEC TS
// 27560's controller): the deployment's operator, named in every receipt.
type Controller struct {
	Name    string `json:"name"`
	Contact string `json:"contact"`
}

// Option configures the service.
type Option func(*Service)

// WithController names the controller in receipts, and the receipts' issuer
// (their iss claim, e.g. the portal's URL).
func WithController(c Controller, issuer string) Option {
	return func(s *Service) { s.controller, s.issuer = c, issuer }
}

// New validates its arguments.
func New(db *postgres.DB, engine *policies.Engine, signer Signer, opts ...Option) (*Service, error) {
	if db == nil || engine == nil || signer == nil {
		return nil, kho.Errorf(kho.EINVALID, "consent: a database, a policy engine and a receipt signer are required")
	}
	s := &Service{db: db, engine: engine, signer: signer, now: time.Now,
		controller: Controller{Name: "kho (mẫu / sample deployment)", Contact: "dpo@kho.invalid"}, issuer: "urn:kho:consent"}
	for _, o := range opts {
		o(s)
	}
	if s.controller.Name == "" || s.controller.Contact == "" || s.issuer == "" {
		return nil, kho.Errorf(kho.EINVALID, "consent: the controller's name and contact and the receipts' issuer are required")
	}
	return s, nil
}

// Terms are what a consent grants, as asked in a request or given directly.
type Terms struct {
	SubjectID     kho.SubjectID    `json:"subject_id,omitempty"`
	Grantee       kho.AgencyCode   `json:"grantee,omitempty"`
	Procedure     string           `json:"procedure" required:"true"`
	Purpose       string           `json:"purpose" required:"true"`
	DocumentTypes []string         `json:"document_types" required:"true"`
	DocumentIDs   []kho.DocumentID `json:"document_ids,omitempty"`
	ValidUntil    time.Time        `json:"valid_until" required:"true"`
	Mode          string           `json:"mode" required:"true"` // once or standing
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
	History       []Change          `json:"history,omitempty"` // read one consent to have it; lists leave it out
}

// Change is one status change of a consent.
type Change struct {
	At        time.Time `json:"at"`
	Status    string    `json:"status"`
	ActorKind string    `json:"actor_kind"`
	ActorRef  string    `json:"actor_ref,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// effectiveStatus reports expired for an active consent past its validity,
// and used up for one with no uses left.
func (c *Consent) effectiveStatus(now time.Time) string {
	switch {
	case c.Status != Active:
		return c.Status
	case !now.Before(c.ValidUntil):
		return Expired
	case c.MaxUses != nil && c.Uses >= *c.MaxUses:
		return UsedUp
	}
	return c.Status
}

// validate checks terms against the catalogue's procedure.
func (t *Terms) validate(now time.Time, proc *policies.Procedure) error {
	if n := utf8.RuneCountInString(strings.TrimSpace(t.Purpose)); n < 10 || n > 500 || !kho.PlainText(t.Purpose, false) {
		return kho.FieldErrorf("purpose", "the purpose must be stated in 10 to 500 characters of plain text (one line, no control or invisible characters)")
	}
	if len(t.DocumentTypes) == 0 {
		return kho.FieldErrorf("document_types", "a consent names the document types it covers; none is implied")
	}
	if len(t.DocumentTypes) > len(proc.Types()) || len(t.DocumentIDs) > 100 {
		return kho.FieldErrorf("document_types", "a consent names each document type once, only those of its procedure, and at most 100 documents")
	}
	for i, dt := range t.DocumentTypes {
		if slices.Contains(t.DocumentTypes[:i], dt) {
			return kho.FieldErrorf("document_types", "document type %s is named twice", kho.Truncate(dt, 40))
		}
	}
	for _, dt := range t.DocumentTypes {
		if !slices.Contains(proc.Types(), dt) {
			return kho.FieldErrorf("document_types", "procedure %s does not use document type %s: one purpose per consent", proc.Code, dt)
		}
	}
	for _, id := range t.DocumentIDs {
		if id.Validate() != nil {
			return kho.FieldErrorf("document_ids", "document_ids must be document ids")
		}
	}
	if !t.ValidUntil.After(now) || t.ValidUntil.After(now.AddDate(1, 0, 1)) {
		return kho.FieldErrorf("valid_until", "valid_until must be in the future and at most one year away")
	}
	switch t.Mode {
	case "once":
		one := 1
		if t.MaxUses != nil && *t.MaxUses != 1 {
			return kho.FieldErrorf("max_uses", "a one-time consent is used once")
		}
		t.MaxUses = &one
	case "standing":
		if t.MaxUses != nil && (*t.MaxUses < 1 || *t.MaxUses > 10000) {
			return kho.FieldErrorf("max_uses", "max_uses must be between 1 and 10000")
		}
	default:
		return kho.FieldErrorf("mode", "mode must be once or standing")
	}
	if t.DataLifeDays < 0 || t.DataLifeDays > 3650 {
		return kho.FieldErrorf("data_life_days", "data_life_days must be between 0 and 3650")
	}
	return nil
}

// procedure reads a procedure from the catalogue in PostgreSQL.
func procedure(ctx context.Context, q postgres.RowQuerier, code string) (*policies.Procedure, error) {
	p, err := postgres.Procedure(ctx, q, code)
	if err != nil {
		return nil, err
	}
	if p == nil {
		e := kho.FieldErrorf("procedure", "procedure %q is not in the catalogue", kho.Truncate(code, 40))
		e.Reason = "unknown_procedure"
		return nil, e
	}
	return p, nil
}

// decide asks policies.Authorize and records a refusal (audit.Decide).
func (s *Service) decide(ctx context.Context, p kho.Principal, event string, a policies.Action, r policies.Resource) error {
	_, err := audit.Decide(ctx, s.db, p, event, a, r)
	return err
}

// agencyFacts reads the caller's agency and the procedure it names, and asks
// Authorize whether it may act for it on subjectID's store (availability,
// consent requests); a refusal is recorded on that store when it exists.
func (s *Service) agencyFacts(ctx context.Context, p kho.Principal, a policies.Action, event, code string, subjectID kho.SubjectID) (*policies.Agency, *policies.Procedure, error) {
	if err := subjectID.Validate(); err != nil {
		return nil, nil, kho.FieldErrorf("subject_id", "%s", kho.ErrorMessage(err))
	}
	st, err := postgres.StoreByID(ctx, s.db.Pool, p, subjectID)
	if err != nil {
		return nil, nil, err
	}
	agency, err := postgres.AgencyOf(ctx, s.db.Pool, p)
	if err != nil {
		return nil, nil, err
	}
	proc, err := postgres.Procedure(ctx, s.db.Pool, code)
	if err != nil {
		return nil, nil, err
	}
	if err := s.decide(ctx, p, event, a, policies.Resource{Store: st, Agency: agency, Procedure: proc}); err != nil {
		return nil, nil, err
	}
	return agency, proc, nil
}

// ownStore returns the store whose consents p decides about: the caller's
// own, or, with onBehalfOf, a ward's or a represented business's, which
// must be a current delegation (refused, never ignored, when it is not).
func (s *Service) ownStore(ctx context.Context, p kho.Principal, subjectID, onBehalfOf kho.SubjectID, event string) (*policies.Store, error) {
	id := onBehalfOf
	if id == "" {
		id = subjectID
	}
	if subjectID != "" && onBehalfOf != "" && subjectID != onBehalfOf {
		return nil, kho.Errorf(kho.EINVALID, "subject_id and on_behalf_of name different stores")
	}
	st, err := postgres.SelectedStore(ctx, s.db.Pool, p, policies.DecideConsent, id)
	if err != nil {
		return nil, err
	}
	if err := s.decide(ctx, p, event, policies.DecideConsent, policies.Resource{Store: st}); err != nil {
		return nil, err
	}
	return st, nil
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
	// Approvals lists who has approved so far, for a ward's request that
	// needs the guardian and the child.
	Approvals []string `json:"approvals"`
}

// RequestConsent lets an agency ask a subject for consent: what, why, for how
// long. The store is created if it does not exist yet, so the answer is the
// same for every well-formed number; the subject is notified through the
// outbox and sees the request in the access log.
func (s *Service) RequestConsent(ctx context.Context, p kho.Principal, t Terms) (*Request, error) {
	if len(t.DocumentIDs) > 0 {
		return nil, kho.FieldErrorf("document_ids", "a consent request names document types; document_ids are the subject's to choose when granting")
	}
	if t.Grantee != "" {
		return nil, kho.FieldErrorf("grantee", "a consent request is for the agency that sends it: leave grantee out")
	}
	_, proc, err := s.agencyFacts(ctx, p, policies.RequestConsent, audit.ConsentRequested, t.Procedure, t.SubjectID)
	if err != nil {
		return nil, err
	}
	if err := t.validate(s.now(), proc); err != nil {
		return nil, err
	}
	h, erased, err := postgres.EnsureStore(ctx, s.db.Pool, t.SubjectID)
	if err != nil {
		return nil, err
	}
	if erased {
		return nil, kho.Refusal(kho.ECONFLICT, policies.ReasonErased, "the store was erased")
	}
	r := &Request{ID: uuid.NewString(), Subject: string(h), Agency: string(p.Agency), Status: "pending", CreatedAt: s.now(), Approvals: []string{}}
	t.SubjectID, t.Grantee = "", p.Agency
	r.Terms = t
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		// Under an Idempotency-Key: only while the key's claim is this
		// request's, and the claim learns the request's id.
		if err := postgres.RecordResult(ctx, tx, r.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO consent_requests (id, subject_handle, agency, procedure_code, purpose, document_types, valid_until, mode, max_uses, data_life_days, status)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending')`,
			r.ID, h, string(p.Agency), proc.Code, t.Purpose, t.DocumentTypes, t.ValidUntil, t.Mode, t.MaxUses, t.DataLifeDays); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: store request", err)
		}
		if err := audit.Record(ctx, tx, audit.Event{Action: audit.ConsentRequested, Outcome: audit.Success, Actor: p, Subject: h, Purpose: proc.Code,
			Details: map[string]any{"request_id": r.ID, "types": t.DocumentTypes}}); err != nil {
			return err
		}
		return notify(ctx, tx, audit.ConsentRequested, h, map[string]any{"request_id": r.ID, "agency": p.Agency, "procedure": proc.Code})
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Requests lists requests: an agency's own, or those to the caller's store
// (or, with onBehalfOf, to a ward's or a represented business's).
func (s *Service) Requests(ctx context.Context, p kho.Principal, onBehalfOf kho.SubjectID) ([]Request, error) {
	var where string
	var arg any
	switch p.Kind {
	case kho.PrincipalAgency, kho.PrincipalAgencyOfficer:
		if onBehalfOf != "" {
			return nil, kho.Errorf(kho.EINVALID, "on_behalf_of is for guardians and representatives")
		}
		where, arg = "r.agency = $1", string(p.Agency)
	default:
		st, err := s.ownStore(ctx, p, "", onBehalfOf, audit.ConsentsListed)
		if err != nil {
			return nil, err
		}
		if !st.Exists {
			return []Request{}, nil
		}
		where, arg = "r.subject_handle = $1", string(st.Handle)
	}
	return s.requests(ctx, where, arg)
}

// Sent is one consent request the calling agency made, or ENOTFOUND: what
// a retry of its creation under an Idempotency-Key is answered with,
// however many the agency made since.
func (s *Service) Sent(ctx context.Context, p kho.Principal, id string) (*Request, error) {
	if (p.Kind != kho.PrincipalAgency && p.Kind != kho.PrincipalAgencyOfficer) || !kho.CanonicalUUID(id) {
		return nil, kho.Errorf(kho.ENOTFOUND, "consent request not found")
	}
	rs, err := s.requests(ctx, "r.agency = $1 AND r.id = $2", string(p.Agency), id)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, kho.Errorf(kho.ENOTFOUND, "consent request not found")
	}
	return &rs[0], nil
}

// requests reads the newest 200 consent requests matching where.
func (s *Service) requests(ctx context.Context, where string, args ...any) ([]Request, error) {
	rows, err := s.db.Pool.Query(ctx, `SELECT r.id, r.subject_handle, r.agency, r.procedure_code, r.purpose, r.document_types, r.valid_until, r.mode,
		r.max_uses, r.data_life_days, r.status, coalesce(r.consent_id::text, ''), r.created_at, r.approvals FROM consent_requests r WHERE `+where+` ORDER BY r.created_at DESC LIMIT 200`, args...)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list requests", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Request, error) {
		var r Request
		err := row.Scan(&r.ID, &r.Subject, &r.Agency, &r.Terms.Procedure, &r.Terms.Purpose, &r.Terms.DocumentTypes, &r.Terms.ValidUntil,
			&r.Terms.Mode, &r.Terms.MaxUses, &r.Terms.DataLifeDays, &r.Status, &r.ConsentID, &r.CreatedAt, &r.Approvals)
		r.Terms.Grantee = kho.AgencyCode(r.Agency)
		return r, err
	})
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: list requests", err)
	}
	return out, nil
}

// Answer is the outcome of answering a consent request.
type Answer struct {
	Request  string   `json:"request"`
	Status   string   `json:"status"`             // approved, denied, or pending (another party must agree)
	Awaiting []string `json:"awaiting,omitempty"` // who else must approve: guardian, self
	Consent  *Consent `json:"consent,omitempty"`
}

// result is what an answer records under its Idempotency-Key (see
// postgres.RecordResult): its status, with the consent an approval made or
// the parties a pending one awaits.
func (a *Answer) result() string {
	switch a.Status {
	case "approved":
		return "approved:" + a.Consent.ID
	case "pending":
		return "pending:" + strings.Join(a.Awaiting, ",")
	}
	return a.Status
}

// RecordedAnswer reads what an answer to requestID recorded under its
// Idempotency-Key before its khod died unanswered; an approval names the
// consent it made (consentID), which the caller reads. ok is false for a
// result no answer records.
func RecordedAnswer(requestID, result string) (a *Answer, consentID string, ok bool) {
	status, rest, _ := strings.Cut(result, ":")
	a = &Answer{Request: requestID, Status: status}
	switch status {
	case "approved":
		return a, rest, rest != ""
	case "pending":
		a.Awaiting = strings.Split(rest, ",")
		return a, "", rest != ""
	case "denied":
		return a, "", rest == ""
	}
	return nil, "", false
}

// Parties whose agreement a ward's consent needs.
const (
	PartyGuardian = "guardian"
	PartySelf     = "self"
)

// needed lists the parties whose approval a consent of st's owner needs: a
// ward's needs the guardian's and, from age 7, the ward's own (Decree
// 13/2023/NĐ-CP, Article 20); anyone else's, the one answer.
func needed(st *policies.Store) []string {
	switch {
	case !st.Ward:
		return nil
	case st.ChildMustConsent:
		return []string{PartyGuardian, PartySelf}
	default:
		return []string{PartyGuardian}
	}
}

// party is the part p plays in a ward's consent.
func party(st *policies.Store) string {
	if st.Capacity == kho.CapacityGuardian {
		return PartyGuardian
	}
	return PartySelf
}

// Answer approves or denies a pending request. For a ward, each party's
// approval is kept until every needed one is there; only then is the consent
// created. Either party's denial ends the request. onBehalfOf, when given,
// must name the request's store (a guardian answering for a ward).
func (s *Service) Answer(ctx context.Context, p kho.Principal, requestID string, approve bool, onBehalfOf kho.SubjectID) (*Answer, error) {
	// One round trip whether or not the request exists, so a refusal costs
	// the same either way.
	var st *policies.Store
	var x postgres.StoreScan
	id := requestID
	if !kho.CanonicalUUID(requestID) {
		id = uuid.Nil.String()
	}
	err := s.db.Pool.QueryRow(ctx, `SELECT `+postgres.StoreColumns("$2")+` FROM consent_requests r JOIN subjects s ON s.handle = r.subject_handle WHERE r.id = $1`,
		id, postgres.Person(p)).Scan(x.Targets()...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read request", err)
	default:
		st = x.Store(p)
	}
	var h kho.SubjectHandle
	if st != nil {
		h = st.Handle
	}
	if onBehalfOf != "" && (st == nil || st.Subject != onBehalfOf) {
		st = nil // a ward other than the request's: nothing to answer
	}
	action := audit.ConsentGranted
	if !approve {
		action = audit.ConsentReqDenied
	}
	if err := s.decide(ctx, p, action, policies.DecideConsent, policies.Resource{Store: st}); err != nil {
		if kho.ErrorCode(err) == kho.ENOTFOUND {
			return nil, kho.Errorf(kho.ENOTFOUND, "consent request not found")
		}
		return nil, err
	}
	out := &Answer{Request: requestID}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		var t Terms
		var status, agency string
		var approvals []string
		err := tx.QueryRow(ctx, `SELECT agency, procedure_code, purpose, document_types, valid_until, mode, max_uses, data_life_days, status, approvals
			FROM consent_requests WHERE id = $1 AND subject_handle = $2 FOR UPDATE`, requestID, h).
			Scan(&agency, &t.Procedure, &t.Purpose, &t.DocumentTypes, &t.ValidUntil, &t.Mode, &t.MaxUses, &t.DataLifeDays, &status, &approvals)
		if errors.Is(err, pgx.ErrNoRows) {
			return kho.Errorf(kho.ENOTFOUND, "consent request not found")
		}
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: read request", err)
		}
		if status != "pending" {
			return kho.Errorf(kho.ECONFLICT, "the request was already answered (%s)", status)
		}
		t.Grantee = kho.AgencyCode(agency)
		ev := audit.Event{Actor: p, Subject: h, Purpose: t.Procedure, ActingFor: st.ActingFor(), Outcome: audit.Success,
			Details: map[string]any{"request_id": requestID, "agency": agency}}
		if !approve {
			out.Status = "denied"
			if err := postgres.RecordResult(ctx, tx, out.result()); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE consent_requests SET status = 'denied', decided_at = now() WHERE id = $1`, requestID); err != nil {
				return kho.WrapError(kho.EUNAVAILABLE, "consent: deny request", err)
			}
			ev.Action = audit.ConsentReqDenied
			if err := audit.Record(ctx, tx, ev); err != nil {
				return err
			}
			return notify(ctx, tx, audit.ConsentReqDenied, h, map[string]any{"request_id": requestID, "agency": agency})
		}
		if !t.ValidUntil.After(s.now()) {
			return kho.Errorf(kho.ECONFLICT, "the request asked for a consent that would already have expired")
		}
		capacity := string(st.Capacity)
		if need := needed(st); need != nil {
			again := slices.Contains(approvals, party(st))
			if !again {
				approvals = append(approvals, party(st))
			}
			for _, n := range need {
				if !slices.Contains(approvals, n) {
					out.Awaiting = append(out.Awaiting, n)
				}
			}
			slices.Sort(approvals)
			capacity = strings.Join(approvals, "+")
			if len(out.Awaiting) > 0 {
				out.Status = "pending"
				if err := postgres.RecordResult(ctx, tx, out.result()); err != nil {
					return err
				}
				if again {
					// This party had approved already: the same answer,
					// nothing recorded or sent twice.
					return nil
				}
				if _, err := tx.Exec(ctx, `UPDATE consent_requests SET approvals = $2 WHERE id = $1`, requestID, approvals); err != nil {
					return kho.WrapError(kho.EUNAVAILABLE, "consent: record approval", err)
				}
				ev.Action = audit.ConsentApprovedBy
				ev.Details["awaiting"] = out.Awaiting
				if err := audit.Record(ctx, tx, ev); err != nil {
					return err
				}
				return notify(ctx, tx, audit.ConsentApprovedBy, h, map[string]any{"request_id": requestID, "awaiting": out.Awaiting})
			}
		}
		c, err := s.create(ctx, tx, p, st, capacity, t, "request", requestID)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE consent_requests SET status = 'approved', approvals = $3, consent_id = $2, decided_at = now() WHERE id = $1`,
			requestID, c.ID, approvals)
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: approve request", err)
		}
		out.Status, out.Consent = "approved", c
		return postgres.RecordResult(ctx, tx, out.result())
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Stable reasons a ward's consent is refused.
const (
	ReasonGuardianRequired = "guardian_required"
	ReasonChildRequired    = "child_consent_required"
)

// wardGrantRefusal says why p may not, alone, make a ward's consent active
// (by granting or resuming it), or nil when it may: only a guardian, and
// only for a child under 7 (an adult ward has no child's consent to give).
func wardGrantRefusal(st *policies.Store) error {
	if st.Capacity != kho.CapacityGuardian {
		return kho.Refusal(kho.EFORBIDDEN, ReasonGuardianRequired, "a minor's consent needs their guardian's: the agency sends a consent request, which both of you answer")
	}
	if st.ChildMustConsent {
		return kho.Refusal(kho.EFORBIDDEN, ReasonChildRequired, "from age 7 the child's own consent is needed too: the agency sends a consent request, which both of you answer")
	}
	return nil
}

// recordRefusal records err, a refusal about st's store, on that store, and
// returns it.
func (s *Service) recordRefusal(ctx context.Context, p kho.Principal, event string, st *policies.Store, err error) error {
	return audit.Refused(ctx, s.db, p, event, policies.Resource{Store: st}, err)
}

// Grant lets a subject (or their guardian or representative) give a consent
// directly, without a request. A ward cannot grant alone; a guardian grants
// alone only for a child under 7: from that age the child agrees too, which
// a consent request (answered by both) provides.
func (s *Service) Grant(ctx context.Context, p kho.Principal, t Terms, onBehalfOf kho.SubjectID) (*Consent, error) {
	st, err := s.ownStore(ctx, p, t.SubjectID, onBehalfOf, audit.ConsentGranted)
	if err != nil {
		return nil, err
	}
	if st.Ward {
		if err := wardGrantRefusal(st); err != nil {
			return nil, s.recordRefusal(ctx, p, audit.ConsentGranted, st, err)
		}
	}
	if err := t.Grantee.Validate(); err != nil {
		return nil, kho.FieldErrorf("grantee", "grantee must be an agency code")
	}
	grantee, err := postgres.AgencyOf(ctx, s.db.Pool, kho.Principal{Kind: kho.PrincipalAgency, Agency: t.Grantee})
	if err != nil {
		return nil, err
	}
	if grantee == nil {
		return nil, kho.FieldErrorf("grantee", "grantee %s is not a registered agency", t.Grantee)
	}
	proc, err := procedure(ctx, s.db.Pool, t.Procedure)
	if err != nil {
		return nil, err
	}
	if err := t.validate(s.now(), proc); err != nil {
		return nil, err
	}
	if _, erased, err := postgres.EnsureStore(ctx, s.db.Pool, st.Subject); err != nil {
		return nil, err
	} else if erased {
		return nil, kho.Refusal(kho.ECONFLICT, policies.ReasonErased, "the store was erased")
	}
	if !st.Exists {
		if st, err = postgres.StoreByID(ctx, s.db.Pool, p, st.Subject); err != nil {
			return nil, err
		}
	}
	var c *Consent
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		if c, err = s.create(ctx, tx, p, st, string(st.Capacity), t, "portal", ""); err != nil {
			return err
		}
		return postgres.RecordResult(ctx, tx, c.ID)
	})
	return c, err
}

// create inserts an active consent with its first history entry and receipt.
func (s *Service) create(ctx context.Context, tx pgx.Tx, p kho.Principal, st *policies.Store, capacity string, t Terms, channel, requestID string) (*Consent, error) {
	h := st.Handle
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
	if err := audit.Record(ctx, tx, audit.Event{Action: audit.ConsentGranted, Outcome: audit.Success, Actor: p, Subject: h, Purpose: c.Procedure, ConsentID: c.ID,
		ActingFor: st.ActingFor(), Details: map[string]any{"grantee": c.Grantee, "types": c.DocumentTypes, "granted_by": capacity}}); err != nil {
		return nil, err
	}
	return c, notify(ctx, tx, audit.ConsentGranted, h, map[string]any{"consent_id": c.ID, "agency": c.Grantee})
}

// changed appends a history entry with a fresh receipt of the artefact.
func (s *Service) changed(ctx context.Context, tx pgx.Tx, p kho.Principal, c *Consent, status, reason string) error {
	ch := Change{At: s.now().UTC().Truncate(time.Microsecond), Status: status, ActorKind: string(p.Kind), ActorRef: p.TokenID, Reason: reason}
	c.History = append(c.History, ch)
	c.Status = status
	r, err := s.receipt(ctx, tx, c, ch.At)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(r)
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
