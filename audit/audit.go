// Package audit is kho's one path to the audit trail: every access to a
// document and every change is recorded through Record, in the transaction
// of the change it records when there is one. The audit issue chains the
// events and signs checkpoints here; callers need not change.
//
// Events name subjects by handle and actors by kind, agency and token id:
// never a personal identification number.
//
// audit imports the root package and is handed a *postgres.DB or a pgx.Tx.
package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/postgres"
)

// Actions recorded.
const (
	DocumentDeposited  = "document.deposited"
	DocumentRead       = "document.read"
	DocumentMetadata   = "document.metadata"
	DocumentVerified   = "document.verified"
	DocumentSuperseded = "document.superseded"
	DocumentRevoked    = "document.revoked"
	DocumentIntegrity  = "document.integrity_failure"
	DocumentsListed    = "documents.listed"
	SubjectErased      = "subject.erased"
	SubjectKeyRotated  = "subject.key_rotated"
	SubjectKeyRewrap   = "subject.keys_rewrapped"
	ObjectReclaimed    = "object.reclaimed"
)

// Outcomes.
const (
	Success = "success"
	Denied  = "denied"
	Failure = "failure"
)

// Event is one audit record.
type Event struct {
	Action   string
	Outcome  string
	Actor    kho.Principal
	Subject  kho.SubjectHandle
	Document kho.DocumentID
	Details  map[string]any // ids, codes, reasons: never contents or personal data
}

// Record appends ev in tx.
func Record(ctx context.Context, tx pgx.Tx, ev Event) error {
	details := ev.Details
	if details == nil {
		details = map[string]any{}
	}
	b, err := json.Marshal(details)
	if err != nil {
		return kho.WrapError(kho.EINTERNAL, "audit: encode details", err)
	}
	var agency, ref, subject, doc, reqID any
	if ev.Actor.Agency != "" {
		agency = string(ev.Actor.Agency)
	}
	if ev.Actor.TokenID != "" {
		ref = ev.Actor.TokenID
	}
	if ev.Subject != "" {
		subject = string(ev.Subject)
	}
	if ev.Document != "" {
		doc = string(ev.Document)
	}
	if id := kho.RequestID(ctx); id != "" {
		reqID = id
	}
	kind := string(ev.Actor.Kind)
	if kind == "" {
		kind = "system"
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_events
		(id, occurred_at, action, outcome, actor_kind, actor_agency, actor_ref, subject_handle, document_id, request_id, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		uuid.Must(uuid.NewV7()), time.Now().UTC(), ev.Action, ev.Outcome, kind, agency, ref, subject, doc, reqID, b)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: record event", err)
	}
	return nil
}

// RecordNow appends ev in a transaction of its own, for events that change
// nothing else (a read, a denial, an integrity failure).
func RecordNow(ctx context.Context, db *postgres.DB, ev Event) error {
	return db.InTx(ctx, func(tx pgx.Tx) error { return Record(ctx, tx, ev) })
}
