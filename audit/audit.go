// Package audit is kho's one path to the audit trail, and the trail's proof
// of integrity. Every access to a document and every change is recorded
// through Record, in the transaction of the change when there is one.
//
// The trail is append-only (grants and triggers) and verifiable: each event
// is a leaf of a Merkle tree hashed as in RFC 6962 (github.com/transparency-
// dev/merkle) and carries the leaf hash of the event before it. Appends
// serialize on one head row, so any number of khod replicas extend a single
// linear log. Checkpoints (tree size and root) are signed notes in the C2SP
// tlog-checkpoint format, with an Ed25519 key held in Vault Transit; anyone
// with the public key can verify an export offline.
//
// Events name subjects by handle and actors by kind, agency, staff id and
// token id: never a personal identification number, a name or document
// contents.
//
// audit imports the root, policies (Decide records what Authorize refuses)
// and postgres packages and is handed a *postgres.DB or a pgx.Tx.
package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/transparency-dev/merkle/compact"

	"kho"
	"kho/policies"
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
	SubjectLegalHold   = "subject.legal_hold"
	SubjectHoldRelease = "subject.legal_hold_released"
	SubjectKeyRotated  = "subject.key_rotated"
	SubjectKeyRewrap   = "subject.keys_rewrapped"
	ObjectReclaimed    = "object.reclaimed"
	AuthFailed         = "auth.failed"
	TokenIssued        = "auth.token_issued" // an access token for an agency's system
	AuditSearched      = "audit.searched"
	AuditExported      = "audit.exported"
	AccessLogRead      = "audit.access_log_read"
	OperatorMigrated   = "operator.migrated"
	StoreResolved      = "store.resolved"
	HoldsListed        = "subject.legal_holds_listed"
	AvailabilityCheck  = "availability.checked"
	ConsentRequested   = "consent.requested"
	ConsentApprovedBy  = "consent.request_approved_in_part" // one of two parties agreed
	ConsentReqDenied   = "consent.request_denied"
	ConsentGranted     = "consent.granted"
	ConsentPaused      = "consent.paused"
	ConsentResumed     = "consent.resumed"
	ConsentRevoked     = "consent.revoked"
	ConsentRead        = "consent.read"
	ConsentsListed     = "consents.listed"
)

// Outcomes.
const (
	Success = "success"
	Denied  = "denied"
	Failure = "failure"
)

// Event is one audit record as callers describe it.
type Event struct {
	Action     string
	Outcome    string
	Actor      kho.Principal
	Subject    kho.SubjectHandle
	Document   kho.DocumentID
	Purpose    string // the procedure or stated purpose of an access
	ConsentID  string // the consent that admitted it
	LegalBasis string // or the legal basis that did
	Reason     string // why a decision went as it did
	// ActingFor says in which capacity the actor acted for the subject
	// (guardian, legal_representative, authorised): the event names both
	// the actor and the represented store.
	ActingFor string
	Details   map[string]any
}

// entryOf builds the entry for ev at index, after prev.
func entryOf(ctx context.Context, ev Event, id string, at time.Time, index uint64, prev []byte) (*Entry, error) {
	details := ev.Details
	if details == nil {
		details = map[string]any{}
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return nil, err
	}
	kind := string(ev.Actor.Kind)
	if kind == "" {
		kind = "system"
	}
	e := &Entry{
		V: 1, Index: index, Prev: hexOrEmpty(prev), ID: id, Time: formatTime(at),
		Action: ev.Action, Outcome: ev.Outcome, ActorKind: kind,
		ActorAgency: string(ev.Actor.Agency), ActorStaff: string(ev.Actor.Staff), ActorRef: ev.Actor.TokenID,
		Subject: string(ev.Subject), Document: string(ev.Document),
		Purpose: ev.Purpose, ConsentID: ev.ConsentID, LegalBasis: ev.LegalBasis, Reason: ev.Reason,
		RequestID: kho.RequestID(ctx), Details: raw,
	}
	switch ev.Actor.Kind {
	case kho.PrincipalAgencyOfficer:
		e.ActingFor = "agency:" + string(ev.Actor.Agency)
	case kho.PrincipalBusinessRep:
		e.ActingFor = "business"
	}
	if ev.ActingFor != "" {
		e.ActingFor = ev.ActingFor
	}
	if e.Details, err = normalizeDetails(raw); err != nil {
		return nil, err
	}
	return e, nil
}

// Record appends ev in tx. It takes the log head's row lock until tx ends:
// appends are serialized, so the chain never forks, whatever the number of
// writers.
func Record(ctx context.Context, tx pgx.Tx, ev Event) error {
	var size uint64
	var last []byte
	var hashes [][]byte
	if err := tx.QueryRow(ctx, `SELECT size, last_leaf, range_hashes FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&size, &last, &hashes); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: lock log head", err)
	}
	id := uuid.Must(uuid.NewV7()).String()
	at := time.Now().UTC().Truncate(time.Microsecond)
	e, err := entryOf(ctx, ev, id, at, size, last)
	if err != nil {
		return kho.WrapError(kho.EINTERNAL, "audit: encode event", err)
	}
	leaf, err := e.LeafHash()
	if err != nil {
		return kho.WrapError(kho.EINTERNAL, "audit: hash event", err)
	}
	rng, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return kho.WrapError(kho.EINTEGRITY, "audit: the log head is corrupt", err)
	}
	var levels []int16
	var idxs []int64
	var nodeHashes [][]byte
	if err := rng.Append(leaf, func(id compact.NodeID, h []byte) {
		levels, idxs, nodeHashes = append(levels, int16(id.Level)), append(idxs, int64(id.Index)), append(nodeHashes, h)
	}); err != nil {
		return kho.WrapError(kho.EINTERNAL, "audit: extend tree", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit_tree_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])`,
		levels, idxs, nodeHashes); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: store tree nodes", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_head SET size = $1, last_leaf = $2, range_hashes = $3 WHERE id = 1`, size+1, leaf, rng.Hashes()); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: advance log head", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_events
		(id, occurred_at, action, outcome, actor_kind, actor_agency, actor_staff, actor_ref, acting_for, subject_handle, document_id,
		 purpose, consent_id, legal_basis, reason, request_id, details, leaf_index, prev_hash, leaf_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)`,
		id, at, e.Action, e.Outcome, e.ActorKind, null(e.ActorAgency), null(e.ActorStaff), null(e.ActorRef), null(e.ActingFor),
		null(e.Subject), null(e.Document), null(e.Purpose), null(e.ConsentID), null(e.LegalBasis), null(e.Reason), null(e.RequestID),
		[]byte(e.Details), int64(size), last, leaf)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: record event", err)
	}
	return nil
}

func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Decide asks policies.Authorize whether p may do a to r and, when not,
// records the refusal as event action: against the store it was about (with
// the document and procedure), so the owner sees who tried, or without a
// subject when nothing that exists was concerned, so that both answers cost
// one append. The one way services authorize.
func Decide(ctx context.Context, db *postgres.DB, p kho.Principal, action string, a policies.Action, r policies.Resource) (policies.Decision, error) {
	d := policies.Authorize(p, a, r)
	if d.Allowed {
		return d, nil
	}
	return d, Refused(ctx, db, p, action, r, d.Err())
}

// Refused records err, a refusal of p's action about the resource r, and
// returns it (or the recording's own failure).
func Refused(ctx context.Context, db *postgres.DB, p kho.Principal, action string, r policies.Resource, err error) error {
	ev := Event{Action: action, Outcome: Denied, Actor: p, Reason: kho.ErrorReason(err)}
	if r.Store != nil && r.Store.Exists {
		ev.Subject, ev.ActingFor = r.Store.Handle, r.Store.ActingFor()
	}
	if r.Document != nil {
		ev.Document = r.Document.ID
	}
	if r.Procedure != nil {
		ev.Purpose = r.Procedure.Code
	}
	if aerr := RecordNow(ctx, db, ev); aerr != nil {
		return aerr
	}
	return err
}

// RecordNow appends ev in a transaction of its own, for events that change
// nothing else (a read, a denial, an integrity failure).
func RecordNow(ctx context.Context, db *postgres.DB, ev Event) error {
	return db.InTx(ctx, func(tx pgx.Tx) error { return Record(ctx, tx, ev) })
}

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
