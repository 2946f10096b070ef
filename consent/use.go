package consent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/policies"
	"kho/postgres"
)

// UseReceiptType is the JWS type of use receipts.
const UseReceiptType = "kho-use-receipt+jws"

// UseReceipt is what kho signs for each admitted fetch by another agency:
// proof for the agency of what it used and under which consent or legal
// basis, and for the subject of what was used. It is signed with the
// consent receipts' key (/.well-known/jwks.json).
type UseReceipt struct {
	Issuer     string            `json:"iss"`
	IssuedAt   int64             `json:"iat"`
	ID         string            `json:"jti"`
	Subject    kho.SubjectHandle `json:"sub"`
	Version    string            `json:"receipt_version"`
	Agency     kho.AgencyCode    `json:"agency"`
	Procedure  string            `json:"procedure"`
	DocumentID kho.DocumentID    `json:"document_id"`
	DocType    string            `json:"document_type"`
	SHA256     string            `json:"document_sha256"` // hex, of the plaintext delivered
	// Nonce is the agency system's Kho-Fetch-Nonce, binding the receipt
	// to its one request.
	Nonce string `json:"nonce,omitempty"`
	// Exactly one of these admitted the fetch.
	ConsentID     string `json:"consent_id,omitempty"`
	ConsentHash   string `json:"consent_receipt_sha256,omitempty"` // base64url SHA-256 of the consent's latest receipt JWS
	UsesLeft      *int   `json:"uses_left,omitempty"`
	LegalBasis    string `json:"legal_basis,omitempty"`
	DataLifeDays  int    `json:"data_life_days,omitempty"`
	DeleteBy      string `json:"delete_by,omitempty"` // RFC 3339: when the agency must have deleted its copy
	AccessLogNote string `json:"note"`
}

// UseReceiptVersion names the use receipt's format.
const UseReceiptVersion = "kho-use-receipt/1"

// usedConsent is what a use receipt says of the consent it was made under,
// read as the use was counted.
type usedConsent struct {
	receipt    *string // nil: the consent has no history (never happens)
	maxUses    *int
	uses, life int
}

// useReceipt signs and stores the use receipt of an admitted fetch, in the
// fetch's transaction.
func (s *Service) useReceipt(ctx context.Context, tx pgx.Tx, req kho.FetchRequest, dec *Decision, used *usedConsent) (string, string, error) {
	d, now := req.Document, s.now().UTC()
	r := UseReceipt{Issuer: s.issuer, IssuedAt: now.Unix(), ID: uuid.NewString(), Subject: d.Subject, Version: UseReceiptVersion,
		Agency: req.Principal.Agency, Procedure: req.Procedure, DocumentID: d.ID, DocType: d.Type, SHA256: d.SHA256,
		ConsentID: dec.ConsentID, LegalBasis: dec.LegalBasis, Nonce: req.Nonce,
		AccessLogNote: "kept by the agency as proof of use; the subject sees it in the access log"}
	if dec.ConsentID != "" {
		if used == nil {
			return "", "", kho.Errorf(kho.EINTERNAL, "consent: a use receipt under a consent needs the consent as counted")
		}
		if used.receipt == nil {
			return "", "", policies.NotFound("consent")
		}
		receipt, maxUses, uses, life := *used.receipt, used.maxUses, used.uses, used.life
		sum := sha256.Sum256([]byte(receipt))
		r.ConsentHash = base64.RawURLEncoding.EncodeToString(sum[:])
		if maxUses != nil {
			left := max(*maxUses-uses, 0)
			r.UsesLeft = &left
		}
		r.DataLifeDays = life
		if life > 0 {
			r.DeleteBy = now.Add(time.Duration(life) * 24 * time.Hour).Format(time.RFC3339)
		}
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return "", "", kho.WrapError(kho.EINTERNAL, "consent: use receipt", err)
	}
	jws, err := s.signer.SignCompact(ctx, ReceiptKey, payload, UseReceiptType)
	if err != nil {
		return "", "", err
	}
	var consentID *string
	if dec.ConsentID != "" {
		consentID = &dec.ConsentID
	}
	var deleteBy *time.Time
	if r.DeleteBy != "" {
		t := now.Add(time.Duration(r.DataLifeDays) * 24 * time.Hour)
		deleteBy = &t
	}
	if _, err := tx.Exec(ctx, `INSERT INTO use_receipts (id, subject_handle, agency, document_id, consent_id, jws, delete_by) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.ID, string(d.Subject), string(r.Agency), string(d.ID), consentID, jws, deleteBy); err != nil {
		return "", "", kho.WrapError(kho.EUNAVAILABLE, "consent: keep the use receipt", err)
	}
	return r.ID, jws, nil
}

// AcknowledgeDeletion records that the agency that fetched a document has
// deleted its copy (its data life ended, or earlier). Only that agency
// may; saying it twice changes nothing.
func (s *Service) AcknowledgeDeletion(ctx context.Context, p kho.Principal, id string) (time.Time, error) {
	if !kho.CanonicalUUID(id) {
		return time.Time{}, policies.NotFound("use receipt")
	}
	var agency string
	var h kho.SubjectHandle
	var doc kho.DocumentID
	err := s.db.Pool.QueryRow(ctx, `SELECT agency, subject_handle, document_id FROM use_receipts WHERE id = $1`, id).Scan(&agency, &h, &doc)
	if errors.Is(err, pgx.ErrNoRows) {
		_, derr := audit.Decide(ctx, s.db, p, "delivery.deletion_acknowledged", policies.AcknowledgeDeletion, policies.Resource{})
		return time.Time{}, derr
	}
	if err != nil {
		return time.Time{}, kho.WrapError(kho.EUNAVAILABLE, "consent: read the use receipt", err)
	}
	st, err := postgres.StoreByHandle(ctx, s.db.Pool, p, h)
	if err != nil {
		return time.Time{}, err
	}
	if _, err := audit.Decide(ctx, s.db, p, "delivery.deletion_acknowledged", policies.AcknowledgeDeletion, policies.Resource{Store: st, Grantee: kho.AgencyCode(agency)}); err != nil {
		return time.Time{}, err
	}
	var at time.Time
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `UPDATE use_receipts SET deletion_acknowledged_at = coalesce(deletion_acknowledged_at, now()) WHERE id = $1 RETURNING deletion_acknowledged_at`, id).Scan(&at); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "consent: record the deletion", err)
		}
		return audit.Record(ctx, tx, audit.Event{Action: "delivery.deletion_acknowledged", Outcome: audit.Success, Actor: p, Subject: h, Document: doc,
			Details: map[string]any{"use_receipt": id}})
	})
	return at, err
}

// UseReceiptJWS returns a kept use receipt to the agency that fetched or to
// the subject's side.
func (s *Service) UseReceiptJWS(ctx context.Context, p kho.Principal, id string) (string, error) {
	if !kho.CanonicalUUID(id) {
		return "", policies.NotFound("use receipt")
	}
	var jws, agency string
	var h kho.SubjectHandle
	err := s.db.Pool.QueryRow(ctx, `SELECT jws, agency, subject_handle FROM use_receipts WHERE id = $1`, id).Scan(&jws, &agency, &h)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", policies.NotFound("use receipt")
	}
	if err != nil {
		return "", kho.WrapError(kho.EUNAVAILABLE, "consent: read the use receipt", err)
	}
	st, err := postgres.StoreByHandle(ctx, s.db.Pool, p, h)
	if err != nil {
		return "", err
	}
	if _, err := audit.Decide(ctx, s.db, p, "use_receipt.read", policies.ReadUseReceipt, policies.Resource{Store: st, Grantee: kho.AgencyCode(agency)}); err != nil {
		return "", err
	}
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: "use_receipt.read", Outcome: audit.Success, Actor: p, Subject: h,
		ActingFor: st.ActingFor(), Details: map[string]any{"use_receipt": id}}); err != nil {
		return "", err
	}
	return jws, nil
}
