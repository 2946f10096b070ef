package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"

	"kho"
)

// Problem is the first thing verification found wrong.
type Problem struct {
	Index   uint64 `json:"index"`
	EventID string `json:"event_id,omitempty"`
	Reason  string `json:"reason"`
}

func (p *Problem) String() string {
	if p.EventID != "" {
		return fmt.Sprintf("event %d (%s): %s", p.Index, p.EventID, p.Reason)
	}
	return fmt.Sprintf("event %d: %s", p.Index, p.Reason)
}

// Result sums up a verification.
type Result struct {
	Events      uint64   `json:"events"`      // entries checked
	Checkpoints int      `json:"checkpoints"` // signed checkpoints matched
	Proofs      int      `json:"proofs"`      // inclusion proofs checked
	Unchained   int      `json:"unchained"`   // events from before the chain began
	Covered     uint64   `json:"covered"`     // the largest signed checkpoint: events 0 to Covered-1 are proven
	Outside     uint64   `json:"outside"`     // events at or beyond Covered, which no checkpoint proves
	First       *Problem `json:"first_problem,omitempty"`
}

// OK reports whether nothing was wrong.
func (r *Result) OK() bool { return r.First == nil }

// Verifier checks a log, or a slice of it, from its entries, signed
// checkpoints and proofs, with nothing but the log's public key. Feed it the
// checkpoints first, then entries in index order.
type Verifier struct {
	origin      string
	v           note.Verifier
	checkpoints map[uint64]*Checkpoint
	full        bool // entries start at index 0: recompute the whole tree
	scopeSet    bool // the scope was said (an export's header), not guessed
	scopeFull   bool
	rng         *compact.Range
	next        uint64
	prev        []byte
	started     bool
	res         Result
}

// NewVerifier verifies the log named origin with the public key vkey.
func NewVerifier(vkey, origin string) (*Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "audit: verifier key", err)
	}
	return &Verifier{origin: origin, v: v, checkpoints: map[uint64]*Checkpoint{}}, nil
}

func (vf *Verifier) fail(index uint64, id, format string, args ...any) {
	if vf.res.First == nil {
		vf.res.First = &Problem{Index: index, EventID: id, Reason: fmt.Sprintf(format, args...)}
	}
}

// AddCheckpoint checks a signed checkpoint; an invalid one is a problem.
func (vf *Verifier) AddCheckpoint(text string) {
	c, err := parseCheckpoint(text, vf.origin, vf.v)
	if err != nil {
		vf.fail(0, "", "%v", err)
		return
	}
	vf.checkpoints[c.Size] = c
	vf.res.Covered = max(vf.res.Covered, c.Size)
}

// AddConsistency checks that the checkpoint of size1 is a prefix of that of
// size2.
func (vf *Verifier) AddConsistency(size1, size2 uint64, hashes [][]byte) {
	a, b := vf.checkpoints[size1], vf.checkpoints[size2]
	if a == nil || b == nil {
		vf.fail(size1, "", "consistency proof between unknown checkpoints %d and %d", size1, size2)
		return
	}
	if err := proof.VerifyConsistency(hasher, size1, size2, hashes, a.Root, b.Root); err != nil {
		vf.fail(size1, "", "checkpoint %d is not a prefix of checkpoint %d: %v", size1, size2, err)
	}
}

// SetScope says whether the entries are the whole log (they must then
// start at index 0 and are recomputed into the tree) or a slice (each
// checked by its inclusion proof).
func (vf *Verifier) SetScope(full bool) { vf.scopeFull, vf.scopeSet = full, true }

// AddUnchained counts an event from before the chain began.
func (vf *Verifier) AddUnchained() { vf.res.Unchained++ }

// AddEntry checks the next entry. storedLeaf is the leaf hash the log
// recorded for it (nil when not known); p, when given, is its inclusion proof
// against one of the checkpoints.
func (vf *Verifier) AddEntry(e *Entry, storedLeaf []byte, p *InclusionProof) {
	vf.res.Events++
	if e.Index >= vf.res.Covered {
		vf.res.Outside++
	}
	if !vf.started {
		vf.started, vf.full, vf.next = true, e.Index == 0, e.Index
		if vf.scopeSet {
			vf.full = vf.scopeFull
			if vf.full && e.Index != 0 {
				vf.fail(0, "", "a full export must start at event 0; it starts at %d", e.Index)
				vf.next = 0
			}
		}
		vf.rng = rangeFactory.NewEmptyRange(0)
	}
	leaf, err := e.LeafHash()
	if err != nil {
		vf.fail(e.Index, e.ID, "cannot be encoded: %v", err)
		return
	}
	if storedLeaf != nil && !bytes.Equal(storedLeaf, leaf) {
		vf.fail(e.Index, e.ID, "its content does not match its recorded hash: the event was altered")
	}
	if p != nil {
		c := vf.checkpoints[p.TreeSize]
		switch {
		case c == nil:
			vf.fail(e.Index, e.ID, "its inclusion proof refers to an unknown checkpoint %d", p.TreeSize)
		case p.Index != e.Index:
			vf.fail(e.Index, e.ID, "its inclusion proof is for another index")
		default:
			if err := proof.VerifyInclusion(hasher, e.Index, p.TreeSize, leaf, p.Hashes, c.Root); err != nil {
				vf.fail(e.Index, e.ID, "it is not in the signed checkpoint of size %d: %v", p.TreeSize, err)
			}
			vf.res.Proofs++
		}
	}
	if !vf.full {
		return // a slice: proofs are all there is to check
	}
	switch {
	case e.Index > vf.next:
		vf.fail(vf.next, "", "the event is missing (the next one present is %d)", e.Index)
	case e.Index < vf.next:
		vf.fail(e.Index, e.ID, "it appears twice or out of order")
	}
	if e.Prev != hexOrEmpty(vf.prev) {
		vf.fail(e.Index, e.ID, "it does not follow the event before it: an event was inserted, removed or changed at this point")
	}
	vf.prev = leaf
	vf.next = e.Index + 1
	if err := vf.rng.Append(leaf, nil); err != nil {
		vf.fail(e.Index, e.ID, "tree: %v", err)
		return
	}
	if c := vf.checkpoints[vf.rng.End()]; c != nil {
		root, err := vf.rng.GetRootHash(nil)
		if err != nil || !bytes.Equal(root, c.Root) {
			vf.fail(e.Index, e.ID, "the log up to here does not match the signed checkpoint of size %d", c.Size)
		} else {
			vf.res.Checkpoints++
		}
	}
}

// Finish returns the result. A full log must reach every checkpoint it was
// given.
func (vf *Verifier) Finish() Result {
	if vf.full {
		for size := range vf.checkpoints {
			if size > vf.next {
				vf.fail(vf.next, "", "the log ends at %d events but a signed checkpoint covers %d: events were removed", vf.next, size)
			}
		}
	}
	return vf.res
}

// Verify checks the whole stored log: every event's hash and link, the tree
// against every signed checkpoint, and the head. It names the first bad
// event.
func (l *Log) Verify(ctx context.Context) (*Result, error) {
	vf, err := NewVerifier(l.vkey, l.origin)
	if err != nil {
		return nil, err
	}
	rows, err := l.db.Pool.Query(ctx, `SELECT note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read checkpoints", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read checkpoints", err)
		}
		vf.AddCheckpoint(n)
	}
	rows.Close()
	var unchained int
	if err := l.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE leaf_index IS NULL`).Scan(&unchained); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: count events", err)
	}
	// An event without an index inserted after the chain began is not an
	// old event: it has no place in the log.
	var strayID *string
	var strayAt *time.Time
	_ = l.db.Pool.QueryRow(ctx, `SELECT e.id::text, e.occurred_at FROM audit_events e
		WHERE e.leaf_index IS NULL AND e.occurred_at >= (SELECT min(occurred_at) FROM audit_events WHERE leaf_index IS NOT NULL)
		ORDER BY e.occurred_at LIMIT 1`).Scan(&strayID, &strayAt)
	for range unchained {
		vf.AddUnchained()
	}
	if err := l.scanEntries(ctx, `WHERE leaf_index IS NOT NULL ORDER BY leaf_index`, nil, func(e *Entry, leaf []byte) error {
		vf.AddEntry(e, leaf, nil)
		return nil
	}); err != nil {
		return nil, err
	}
	res := vf.Finish()
	if strayID != nil && res.First == nil {
		res.First = &Problem{EventID: *strayID, Reason: "an event with no place in the chain was inserted"}
	}
	var size uint64
	var hashes [][]byte
	if err := l.db.Pool.QueryRow(ctx, `SELECT size, range_hashes FROM audit_head WHERE id = 1`).Scan(&size, &hashes); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: read log head", err)
	}
	if res.First == nil && size != res.Events {
		res.First = &Problem{Index: res.Events, Reason: fmt.Sprintf("the log head counts %d events but %d are stored", size, res.Events)}
	}
	return &res, nil
}

// scanEntries reads events as entries, with their stored leaf hashes.
func (l *Log) scanEntries(ctx context.Context, where string, args []any, fn func(*Entry, []byte) error) error {
	rows, err := l.db.Pool.Query(ctx, `SELECT leaf_index, coalesce(encode(prev_hash, 'hex'), ''), id::text, occurred_at, action, outcome, actor_kind,
		coalesce(actor_agency, ''), coalesce(actor_staff, ''), coalesce(actor_ref, ''), coalesce(acting_for, ''),
		coalesce(subject_handle::text, ''), coalesce(document_id::text, ''), coalesce(purpose, ''), coalesce(consent_id::text, ''),
		coalesce(legal_basis, ''), coalesce(reason, ''), coalesce(request_id, ''), details::text, leaf_hash
		FROM audit_events `+where, args...)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: read events", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var at time.Time
		var details string
		var leaf []byte
		var idx int64
		if err := rows.Scan(&idx, &e.Prev, &e.ID, &at, &e.Action, &e.Outcome, &e.ActorKind, &e.ActorAgency, &e.ActorStaff, &e.ActorRef,
			&e.ActingFor, &e.Subject, &e.Document, &e.Purpose, &e.ConsentID, &e.LegalBasis, &e.Reason, &e.RequestID, &details, &leaf); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "audit: read events", err)
		}
		e.V, e.Index, e.Time, e.Details = 1, uint64(idx), formatTime(at), []byte(details)
		if err := fn(&e, leaf); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "audit: read events", err)
	}
	return nil
}

// leafHex is for exports.
func leafHex(b []byte) string { return hex.EncodeToString(b) }
