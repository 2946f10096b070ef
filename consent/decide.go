package consent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/policies"
	"kho/postgres"
)

// Stable reasons of refused fetches, in problem+json's "reason".
const (
	ReasonNotAgency        = "not_an_agency"
	ReasonNotAdmitted      = "not_admitted" // no policy admits it (answered as not found: nothing leaks)
	ReasonConsentRequired  = "consent_required"
	ReasonConsentPaused    = "consent_paused"
	ReasonConsentRevoked   = "consent_revoked"
	ReasonConsentExpired   = "consent_expired"
	ReasonConsentUsedUp    = "consent_used_up"
	ReasonConsentOtherDoc  = "consent_other_document"
	ReasonConsentOtherUse  = "consent_other_purpose"
	ReasonDocumentNotValid = "document_not_valid"
)

// consentLookup finds the consent that admits a fetch, or the reason none
// does.
func (s *Service) consentLookup(ctx context.Context, h kho.SubjectHandle, agency kho.AgencyCode, proc string, docType string, doc kho.DocumentID) (string, string, error) {
	// Newest first: when none admits, the newest consent for this purpose
	// says why (what the subject did last, or that its uses ran out), not
	// an older one it replaced.
	rows, err := s.db.Pool.Query(ctx, `SELECT id, procedure_code, status, valid_from, valid_until, max_uses, uses, document_ids::text[]
		FROM consents WHERE subject_handle = $1 AND grantee = $2 AND $3 = ANY(document_types) ORDER BY created_at DESC, id`, h, string(agency), docType)
	if err != nil {
		return "", "", kho.WrapError(kho.EUNAVAILABLE, "consent: look up consents", err)
	}
	defer rows.Close()
	now := s.now()
	why := ""
	for rows.Next() {
		var id, procedure, status string
		var from, until time.Time
		var max *int
		var uses int
		var ids []string
		if err := rows.Scan(&id, &procedure, &status, &from, &until, &max, &uses, &ids); err != nil {
			return "", "", kho.WrapError(kho.EUNAVAILABLE, "consent: look up consents", err)
		}
		r := ""
		switch {
		case procedure != proc:
			if why == "" {
				why = ReasonConsentOtherUse
			}
			continue
		case status == Revoked:
			r = ReasonConsentRevoked
		case status == Paused:
			r = ReasonConsentPaused
		case now.Before(from) || !now.Before(until):
			r = ReasonConsentExpired
		case max != nil && uses >= *max:
			r = ReasonConsentUsedUp
		case len(ids) > 0 && !slices.Contains(ids, string(doc)):
			r = ReasonConsentOtherDoc
		default:
			return id, "", nil
		}
		if why == "" || why == ReasonConsentOtherUse {
			why = r
		}
	}
	if err := rows.Err(); err != nil {
		return "", "", kho.WrapError(kho.EUNAVAILABLE, "consent: look up consents", err)
	}
	if why == "" {
		why = ReasonConsentRequired
	}
	return "", why, nil
}

var reasonText = map[string]string{
	ReasonNotAgency:        "only an agency fetches documents of another's store",
	ReasonNotAdmitted:      "no reuse policy admits this agency, procedure and document type",
	ReasonConsentRequired:  "this reuse needs the subject's consent, and none covers it: request consent",
	ReasonConsentPaused:    "the subject has paused the consent that covered this",
	ReasonConsentRevoked:   "the subject has revoked the consent that covered this",
	ReasonConsentExpired:   "the consent that covered this has expired",
	ReasonConsentUsedUp:    "the consent that covered this has no uses left",
	ReasonConsentOtherDoc:  "the consent covers other documents of this type, not this one",
	ReasonConsentOtherUse:  "the consent given covers another purpose (procedure): one purpose per consent",
	ReasonDocumentNotValid: "the document is not valid (revoked, superseded or expired) and cannot be reused",
}

// Decision is the outcome of a fetch request and why, as explain shows it.
type Decision struct {
	Allowed    bool
	Reason     string // a stable reason, set on refusals
	ConsentID  string
	LegalBasis string
	Policy     policies.ReuseAnswer
	Query      policies.ReuseQuery
}

// Decide evaluates a fetch without recording or counting anything: what
// AuthorizeFetch would decide now.
func (s *Service) Decide(ctx context.Context, req kho.FetchRequest) (*Decision, error) {
	return s.decideFetch(ctx, req, true)
}

// PrecheckFetch decides a fetch before anything of the document is read: a
// refusal is recorded against the subject's store, with the agency, the
// procedure and the reason, and returned; nothing is counted. Requests no
// policy admits are answered exactly as a document that does not exist.
func (s *Service) PrecheckFetch(ctx context.Context, req kho.FetchRequest) error {
	dec, err := s.decideFetch(ctx, req, true)
	if err != nil || dec.Allowed {
		return err
	}
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.DocumentRead, Outcome: audit.Denied, Actor: req.Principal,
		Subject: req.Document.Subject, Document: req.Document.ID, Purpose: req.Procedure, Reason: dec.Reason}); err != nil {
		return err
	}
	return refusal(dec.Reason)
}

// refusal is the error a refused fetch answers with.
func refusal(reason string) error {
	if reason == ReasonNotAdmitted || reason == ReasonNotAgency {
		return policies.Authorize(kho.Principal{}, policies.ReadDocument, policies.Resource{}).Err()
	}
	return kho.Refusal(kho.EFORBIDDEN, reason, "%s", reasonText[reason])
}

// decideFetch evaluates a fetch; with checkValidity unset it leaves the
// document's validity to the caller, which checks it under lock.
func (s *Service) decideFetch(ctx context.Context, req kho.FetchRequest, checkValidity bool) (*Decision, error) {
	p, d := req.Principal, req.Document
	if p.Kind != kho.PrincipalAgency && p.Kind != kho.PrincipalAgencyOfficer {
		return &Decision{Reason: ReasonNotAgency}, nil
	}
	agency, err := postgres.AgencyOf(ctx, s.db.Pool, p)
	if err != nil {
		return nil, err
	}
	if agency == nil {
		return &Decision{Reason: ReasonNotAgency}, nil
	}
	kind := agency.Kind
	proc, err := procedure(ctx, s.db.Pool, req.Procedure)
	if err != nil {
		return nil, err
	}
	q := policies.ReuseQuery{Agency: string(p.Agency), AgencyKind: kind, Action: policies.ActionFetch, Procedure: proc,
		DocumentID: string(d.ID), DocumentType: d.Type}
	// What no consent could admit is refused from the policy alone, without
	// reading the subject's consents or the document's state: the answer
	// (and its cost) is then that of a document that does not exist.
	withConsent := q
	withConsent.Consent = true
	if !s.engine.Decide(withConsent).Allowed {
		return &Decision{Reason: ReasonNotAdmitted, Policy: s.engine.Decide(q), Query: q}, nil
	}
	consentID, why, err := s.consentLookup(ctx, d.Subject, p.Agency, proc.Code, d.Type, d.ID)
	if err != nil {
		return nil, err
	}
	q.Consent = consentID != ""
	ans := s.engine.Decide(q)
	dec := &Decision{Policy: ans, Query: q}
	valid := true
	if checkValidity {
		if valid, err = s.documentValid(ctx, s.db.Pool, d.ID, false); err != nil {
			return nil, err
		}
	}
	switch {
	case !ans.Allowed && ans.NeedsConsent:
		dec.Reason = why
	case !ans.Allowed:
		dec.Reason = ReasonNotAdmitted
	case !valid:
		dec.Reason = ReasonDocumentNotValid
	case ans.LegalBasis != "":
		dec.Allowed, dec.LegalBasis = true, ans.LegalBasis
	default:
		dec.Allowed, dec.ConsentID = true, consentID
	}
	return dec, nil
}

// AuthorizeFetch decides a fetch and, before returning, records the decision
// in the audit trail — with its reason, and the consent or legal basis — and
// counts the consent's use, in one transaction. The count is conditional on
// uses left, so concurrent fetches on a one-time consent admit exactly one.
func (s *Service) AuthorizeFetch(ctx context.Context, req kho.FetchRequest) (kho.FetchGrant, error) {
	// Validity is read once, under lock, in the transaction below.
	dec, err := s.decideFetch(ctx, req, false)
	if err != nil {
		return kho.FetchGrant{}, err
	}
	p, d := req.Principal, req.Document
	ev := audit.Event{Action: audit.DocumentRead, Actor: p, Subject: d.Subject, Document: d.ID, Purpose: req.Procedure}
	var grant kho.FetchGrant
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		// The document must still be valid when the use is counted: a
		// revocation committed meanwhile wins.
		if dec.Allowed {
			valid, err := s.documentValid(ctx, tx, d.ID, true)
			if err != nil {
				return err
			}
			if !valid {
				dec.Allowed, dec.Reason, dec.ConsentID, dec.LegalBasis = false, ReasonDocumentNotValid, "", ""
			}
		}
		var used *usedConsent
		if dec.Allowed && dec.ConsentID != "" {
			// Counted, and what the use receipt says of the consent read,
			// in one statement.
			used = &usedConsent{}
			err := tx.QueryRow(ctx, `UPDATE consents c SET uses = uses + 1
				WHERE id = $1 AND status = 'active' AND now() >= valid_from AND now() < valid_until AND (max_uses IS NULL OR uses < max_uses)
				RETURNING (SELECT receipt FROM consent_history WHERE consent_id = c.id ORDER BY seq DESC LIMIT 1), c.max_uses, c.uses, c.data_life_days`,
				dec.ConsentID).Scan(&used.receipt, &used.maxUses, &used.uses, &used.life)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				// Another fetch took the last use, or the subject changed the
				// consent, since the decision was read.
				dec.Allowed, dec.Reason = false, ReasonConsentUsedUp
			case err != nil:
				return kho.WrapError(kho.EUNAVAILABLE, "consent: count use", err)
			}
		}
		if dec.Allowed {
			ev.Outcome, ev.ConsentID, ev.LegalBasis = audit.Success, dec.ConsentID, dec.LegalBasis
			grant = kho.FetchGrant{ConsentID: dec.ConsentID, LegalBasis: dec.LegalBasis}
			// The use receipt is signed and kept in the same transaction:
			// no admitted fetch without one.
			id, jws, err := s.useReceipt(ctx, tx, req, dec, used)
			if err != nil {
				return err
			}
			grant.UseReceiptID, grant.UseReceipt = id, jws
			ev.Details = map[string]any{"use_receipt": grant.UseReceiptID}
		} else {
			ev.Outcome, ev.Reason = audit.Denied, dec.Reason
		}
		return audit.Record(ctx, tx, ev)
	})
	if err != nil {
		return kho.FetchGrant{}, err
	}
	if !dec.Allowed {
		return grant, refusal(dec.Reason)
	}
	return grant, nil
}

// documentValid reads whether a document is valid now (not revoked,
// superseded, erased or past its validity), locking it against change when
// lock is set.
func (s *Service) documentValid(ctx context.Context, q postgres.RowQuerier, id kho.DocumentID, lock bool) (bool, error) {
	sql := `SELECT status = 'valid' AND (valid_until IS NULL OR valid_until >= current_date) FROM documents WHERE id = $1`
	if lock {
		sql += ` FOR SHARE`
	}
	var valid bool
	if err := q.QueryRow(ctx, sql, id).Scan(&valid); err != nil {
		return false, kho.WrapError(kho.EUNAVAILABLE, "consent: read document status", err)
	}
	return valid, nil
}

// Availability of one document type for a procedure.
type Availability struct {
	Type      string         `json:"type"`
	Required  bool           `json:"required"`
	Status    string         `json:"status"` // available, expired, missing, not_admitted
	Documents []AvailableDoc `json:"documents,omitempty"`
}

// AvailableDoc is a valid document an agency need not ask for.
type AvailableDoc struct {
	ID         kho.DocumentID `json:"id"`
	Issuer     string         `json:"issuer,omitempty"`
	Source     string         `json:"source"`
	IssuedOn   string         `json:"issued_on"`
	ValidUntil string         `json:"valid_until,omitempty"`
}

// CheckAvailability tells an agency, for a subject and a procedure it
// handles, which of the procedure's document types are already in the store
// and valid (these it must not ask the subject for), expired, or missing.
// Types the policy does not let it see are "not_admitted", whether or not
// such documents exist.
func (s *Service) CheckAvailability(ctx context.Context, p kho.Principal, subjectID kho.SubjectID, procedureCode string) ([]Availability, error) {
	agency, proc, err := s.agencyFacts(ctx, p, policies.CheckAvailability, audit.AvailabilityCheck, procedureCode, subjectID)
	if err != nil {
		return nil, err
	}
	kind := agency.Kind
	// The store is created when missing: the answer (and its cost) is the
	// same for every well-formed number, and the subject sees the check.
	h, _, err := postgres.EnsureStore(ctx, s.db.Pool, subjectID)
	if err != nil {
		return nil, err
	}
	out := []Availability{}
	for _, t := range proc.Types() {
		a := Availability{Type: t, Required: slices.Contains(proc.Requires, t), Status: "missing"}
		ans := s.engine.Decide(policies.ReuseQuery{Agency: string(p.Agency), AgencyKind: kind, Action: policies.ActionList, Procedure: proc, DocumentType: t})
		if !ans.Allowed {
			a.Status = "not_admitted"
			out = append(out, a)
			continue
		}
		if h != "" {
			rows, err := s.db.Pool.Query(ctx, `SELECT id, coalesce(issuer, ''), source, issued_on::text, coalesce(valid_until::text, ''), valid_until IS NOT NULL AND valid_until < current_date
				FROM documents WHERE subject_handle = $1 AND type_code = $2 AND status = 'valid' ORDER BY id DESC LIMIT 20`, h, t)
			if err != nil {
				return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: availability", err)
			}
			expired := false
			for rows.Next() {
				var d AvailableDoc
				var isExpired bool
				if err := rows.Scan(&d.ID, &d.Issuer, &d.Source, &d.IssuedOn, &d.ValidUntil, &isExpired); err != nil {
					rows.Close()
					return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: availability", err)
				}
				if isExpired {
					expired = true
					continue
				}
				a.Documents = append(a.Documents, d)
			}
			rows.Close()
			switch {
			case len(a.Documents) > 0:
				a.Status = "available"
			case expired:
				a.Status = "expired"
			}
		}
		out = append(out, a)
	}
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.AvailabilityCheck, Outcome: audit.Success, Actor: p, Subject: h, Purpose: proc.Code}); err != nil {
		return nil, err
	}
	return out, nil
}

// Explain renders the whole decision for people: the verdict with its
// reason, then the policy's own explanation.
func (d *Decision) Explain() string {
	var b strings.Builder
	switch {
	case d.Allowed && d.LegalBasis != "":
		fmt.Fprintf(&b, "ALLOW on a legal basis: %s\n", d.LegalBasis)
	case d.Allowed:
		fmt.Fprintf(&b, "ALLOW under consent %s\n", d.ConsentID)
	default:
		fmt.Fprintf(&b, "DENY (%s): %s\n", d.Reason, reasonText[d.Reason])
	}
	if d.Query.Procedure != nil {
		b.WriteString(d.Policy.Explain(d.Query))
	}
	return b.String()
}
