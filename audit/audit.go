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
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	DepositAnswered    = "document.deposit_answered" // a deposit's retry answered with what it made
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
	inTx.Add(1)
	return appendEvents(ctx, tx, []pending{{ctx: ctx, ev: ev}})
}

// inTx counts the appends made in callers' transactions in this process:
// a sequencer that sees it moved knows its remembered head is stale
// without sending a batch PostgreSQL would refuse.
var inTx atomic.Uint64

// pending is an event waiting to be appended, with the context of the
// request it belongs to (its request id goes into the entry).
type pending struct {
	ctx  context.Context
	ev   Event
	done chan error
}

// appendEvents appends evs, in order, in tx: two round trips whatever
// their number (the head read under its lock, then one batch of three
// statements).
func appendEvents(ctx context.Context, tx pgx.Tx, evs []pending) error {
	h, err := lockHead(ctx, tx)
	if err != nil {
		return err
	}
	b, _, err := appendBatch(ctx, h, evs, false)
	if err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: record event", err)
	}
	return nil
}

// head is the log's head row: its size, its last leaf hash and the hashes
// of its compact range.
type head struct {
	size   uint64
	last   []byte
	hashes [][]byte
}

// lockHead reads the head under its row lock, held until tx ends.
func lockHead(ctx context.Context, tx pgx.Tx) (*head, error) {
	var h head
	if err := tx.QueryRow(ctx, `SELECT size, last_leaf, range_hashes FROM audit_head WHERE id = 1 FOR UPDATE`).Scan(&h.size, &h.last, &h.hashes); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: lock log head", err)
	}
	return &h, nil
}

// appendBatch builds the statements that append evs after h, and the head
// they leave. With checked, the head's update refuses (SQLSTATE 22012,
// errHeadMoved) unless the log is still at h: the statements can then run
// without the head read under lock, on a head remembered from the last
// append, and one replica's appends never fork another's.
func appendBatch(ctx context.Context, h *head, evs []pending, checked bool) (*pgx.Batch, *head, error) {
	size, last := h.size, h.last
	rng, err := rangeFactory.NewRange(0, size, h.hashes)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINTEGRITY, "audit: the log head is corrupt", err)
	}
	var levels []int16
	var idxs []int64
	var nodeHashes [][]byte
	visit := func(id compact.NodeID, h []byte) {
		levels, idxs, nodeHashes = append(levels, int16(id.Level)), append(idxs, int64(id.Index)), append(nodeHashes, h)
	}
	n := len(evs)
	cols := eventColumns{
		text: make([][]*string, textColumns), at: make([]time.Time, n), index: make([]int64, n), prev: make([][]byte, n), leaf: make([][]byte, n),
	}
	for i := range cols.text {
		cols.text[i] = make([]*string, n)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	for i, p := range evs {
		id := uuid.Must(uuid.NewV7()).String()
		e, err := entryOf(p.ctx, p.ev, id, at, size, last)
		if err != nil {
			return nil, nil, kho.WrapError(kho.EINTERNAL, "audit: encode event", err)
		}
		leaf, err := e.LeafHash()
		if err != nil {
			return nil, nil, kho.WrapError(kho.EINTERNAL, "audit: hash event", err)
		}
		if err := rng.Append(leaf, visit); err != nil {
			return nil, nil, kho.WrapError(kho.EINTERNAL, "audit: extend tree", err)
		}
		for c, v := range []string{id, e.Action, e.Outcome, e.ActorKind, e.ActorAgency, e.ActorStaff, e.ActorRef, e.ActingFor,
			e.Subject, e.Document, e.Purpose, e.ConsentID, e.LegalBasis, e.Reason, e.RequestID, string(e.Details)} {
			if v != "" || c == colDetails {
				cols.text[c][i] = &v
			}
		}
		cols.at[i], cols.index[i], cols.prev[i], cols.leaf[i] = at, int64(size), last, leaf
		size, last = size+1, leaf
	}
	b := &pgx.Batch{}
	if checked {
		// 1/0 when no row matched: the batch fails and nothing of it stays.
		b.Queue(`WITH moved AS (UPDATE audit_head SET size = $1, last_leaf = $2, range_hashes = $3
			WHERE id = 1 AND size = $4 AND last_leaf IS NOT DISTINCT FROM $5 RETURNING 1)
			SELECT 1 / (SELECT count(*)::int FROM moved)`, size, last, rng.Hashes(), h.size, h.last)
	} else {
		b.Queue(`UPDATE audit_head SET size = $1, last_leaf = $2, range_hashes = $3 WHERE id = 1`, size, last, rng.Hashes())
	}
	b.Queue(`INSERT INTO audit_tree_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])`,
		levels, idxs, nodeHashes)
	t := cols.text
	b.Queue(`INSERT INTO audit_events
		(id, occurred_at, action, outcome, actor_kind, actor_agency, actor_staff, actor_ref, acting_for, subject_handle, document_id,
		 purpose, consent_id, legal_basis, reason, request_id, details, leaf_index, prev_hash, leaf_hash)
		SELECT id::uuid, at, action, outcome, kind, agency, staff, ref, acting, subject::uuid, doc::uuid,
		 purpose, consent::uuid, basis, reason, req, details::jsonb, idx, prev, leaf
		FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
		 $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::bigint[], $19::bytea[], $20::bytea[])
		 AS e(id, at, action, outcome, kind, agency, staff, ref, acting, subject, doc, purpose, consent, basis, reason, req, details, idx, prev, leaf)`,
		t[0], cols.at, t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15], cols.index, cols.prev, cols.leaf)
	return b, &head{size: size, last: last, hashes: rng.Hashes()}, nil
}

// eventColumns are a batch of events as the columns of one INSERT.
type eventColumns struct {
	text  [][]*string // id, action, outcome, … details: textColumns columns, nil for NULL
	at    []time.Time
	index []int64
	prev  [][]byte
	leaf  [][]byte
}

const (
	textColumns = 16
	colDetails  = 15 // never NULL: '{}' at least
)

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
// nothing else (a read, a denial, an integrity failure), and returns once
// it is committed. Events recorded at the same moment through the same
// pool share one transaction (group commit, as transparency logs
// sequence): one lock of the head, one tree update and one commit for all
// of them, so the trail keeps up with many writers. If that transaction
// fails, none of its events is recorded and each caller gets the error.
func RecordNow(ctx context.Context, db *postgres.DB, ev Event) error {
	v, _ := sequencers.LoadOrStore(db, &sequencer{db: db})
	return v.(*sequencer).record(ctx, ev)
}

// sequencers holds one sequencer per pool.
var sequencers sync.Map // *postgres.DB → *sequencer

// sequencer batches the events of concurrent RecordNow calls. No goroutine
// waits when nothing is to be recorded: the first caller to find it idle
// starts one, which appends batches until none is left.
type sequencer struct {
	db      *postgres.DB
	mu      sync.Mutex
	queue   []pending
	running bool
	head    *head  // as this sequencer's last append left it; only run uses it
	seen    uint64 // inTx when head was remembered
}

// maxBatch bounds the events one transaction appends.
const maxBatch = 512

func (s *sequencer) record(ctx context.Context, ev Event) error {
	p := pending{ctx: ctx, ev: ev, done: make(chan error, 1)}
	s.mu.Lock()
	s.queue = append(s.queue, p)
	if !s.running {
		s.running = true
		go s.run()
	}
	s.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The event may still be recorded: an access is never left out
		// of the trail, but one the caller gave up on may be in it.
		return kho.WrapError(kho.EUNAVAILABLE, "audit: the request ended before its event was recorded", ctx.Err())
	}
}

func (s *sequencer) run() {
	for {
		s.mu.Lock()
		n := min(len(s.queue), maxBatch)
		if n == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		s.mu.Unlock()
		// The batch outlives any one caller's request, within bounds.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), 30*time.Second)
		err := s.append(ctx, batch)
		cancel()
		for _, p := range batch {
			p.done <- err
		}
		// The callers just released often record again at once: let them
		// queue, so that the next batch carries them rather than one.
		runtime.Gosched()
	}
}

// append commits batch. When it remembers the head, it sends everything in
// one round trip (one implicit transaction, whose head update checks that
// no one else appended meanwhile); otherwise, or when someone did, it reads
// the head under its lock first.
func (s *sequencer) append(ctx context.Context, batch []pending) error {
	// Read first: an append in a caller's transaction that starts after
	// this makes the next batch read the head again.
	seen := inTx.Load()
	if h := s.head; h != nil && seen == s.seen {
		s.head = nil
		b, next, err := appendBatch(ctx, h, batch, true)
		if err != nil {
			return err
		}
		err = s.db.Pool.SendBatch(ctx, b).Close()
		if err == nil {
			s.head, s.seen = next, seen
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22012" {
			return kho.WrapError(kho.EUNAVAILABLE, "audit: record event", err)
		}
		// Another writer appended: read the head as it is now.
	}
	var next *head
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		var b *pgx.Batch
		if b, next, err = appendBatch(ctx, h, batch, false); err != nil {
			return err
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "audit: record event", err)
		}
		return nil
	})
	if err == nil {
		s.head, s.seen = next, seen
	}
	return err
}

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
