package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"kho"
)

// Record of the trail as it is shown: the entry, its leaf hash, and, when a
// checkpoint covers it, its inclusion proof.
type Listed struct {
	Entry *Entry `json:"entry"`
	// Canonical is the entry exactly as hashed: its leaf hash is
	// SHA-256(0x00 || Canonical). Entry is the same data for reading; a
	// verifier hashes Canonical.
	Canonical string          `json:"canonical"`
	LeafHash  string          `json:"leaf_hash"`
	Proof     *InclusionProof `json:"proof,omitempty"`
}

// canonical returns e's hashed bytes, as a string.
func canonical(e *Entry) string {
	b, err := e.Bytes()
	if err != nil {
		return ""
	}
	return string(b)
}

// Page is a page of the trail, newest first, with the checkpoint its proofs
// refer to.
type Page struct {
	Events     []Listed `json:"events"`
	NextCursor string   `json:"next_cursor,omitempty"`
	Checkpoint string   `json:"checkpoint,omitempty"`
}

// Filter selects events for a search. Empty fields match everything.
type Filter struct {
	Subject  kho.SubjectHandle
	Agency   kho.AgencyCode
	Staff    kho.StaffID
	Document kho.DocumentID
	Action   string
	Outcome  string
	From, To time.Time
	Cursor   string // leaf index to continue below
	Limit    int    // 1 to 500 (default 100)
	// UpTo, for an export, leaves out events at this index and after: the
	// export then ends at a checkpoint that covers every event in it.
	UpTo uint64
}

func (f *Filter) where() (string, []any, error) {
	conds := []string{"leaf_index IS NOT NULL"}
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Subject != "" {
		if f.Subject.Validate() != nil {
			return "", nil, kho.Errorf(kho.EINVALID, "subject must be a store handle")
		}
		add("subject_handle = ?", string(f.Subject))
	}
	if f.Agency != "" {
		add("actor_agency = ?", string(f.Agency))
	}
	if f.Staff != "" {
		add("actor_staff = ?", string(f.Staff))
	}
	if f.Document != "" {
		if f.Document.Validate() != nil {
			return "", nil, kho.Errorf(kho.EINVALID, "document must be a document id")
		}
		add("document_id = ?", string(f.Document))
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	switch f.Outcome {
	case "", Success, Denied, Failure:
		if f.Outcome != "" {
			add("outcome = ?", f.Outcome)
		}
	default:
		return "", nil, kho.Errorf(kho.EINVALID, "outcome must be success, denied or failure")
	}
	if !f.From.IsZero() {
		add("occurred_at >= ?", f.From)
	}
	if !f.To.IsZero() {
		add("occurred_at < ?", f.To)
	}
	if f.Cursor != "" {
		n, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || n < 0 {
			return "", nil, kho.Errorf(kho.EINVALID, "cursor is not one this service returned")
		}
		add("leaf_index < ?", n)
	}
	return "WHERE " + strings.Join(conds, " AND "), args, nil
}

// Search returns matching events, newest first, each with its inclusion
// proof in the latest checkpoint when it covers them.
func (l *Log) Search(ctx context.Context, f Filter) (*Page, error) {
	if l.replica != nil && ctx.Err() == nil {
		r := *l
		r.db, r.replica = l.replica, nil
		page, err := r.Search(ctx, f)
		if err == nil || kho.ErrorCode(err) == kho.EINVALID {
			return page, err
		}
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if f.Limit < 1 || f.Limit > 500 {
		return nil, kho.Errorf(kho.EINVALID, "limit must be between 1 and 500")
	}
	where, args, err := f.where()
	if err != nil {
		return nil, err
	}
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil && kho.ErrorCode(err) != kho.ENOTFOUND {
		return nil, err
	}
	page := &Page{Events: []Listed{}}
	if cp != nil {
		page.Checkpoint = cp.Note
	}
	args = append(args, f.Limit+1)
	err = l.scanEntries(ctx, where+" ORDER BY leaf_index DESC LIMIT $"+strconv.Itoa(len(args)), args, func(e *Entry, leaf []byte) error {
		page.Events = append(page.Events, Listed{Entry: e, Canonical: canonical(e), LeafHash: leafHex(leaf)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(page.Events) > f.Limit {
		page.Events = page.Events[:f.Limit]
		page.NextCursor = strconv.FormatUint(page.Events[f.Limit-1].Entry.Index, 10)
	}
	if cp != nil {
		for i := range page.Events {
			if idx := page.Events[i].Entry.Index; idx < cp.Size {
				if page.Events[i].Proof, err = l.Inclusion(ctx, idx, cp.Size); err != nil {
					return nil, err
				}
			}
		}
	}
	return page, nil
}

// AccessLog is a subject's own view: every event on their store, newest
// first, with proofs.
func (l *Log) AccessLog(ctx context.Context, h kho.SubjectHandle, cursor string, limit int) (*Page, error) {
	return l.Search(ctx, Filter{Subject: h, Cursor: cursor, Limit: limit})
}

// ExportLine is one line of a JSON Lines export.
type ExportLine struct {
	Type        string          `json:"type"` // header, checkpoint, consistency, event, end
	Origin      string          `json:"origin,omitempty"`
	Scope       string          `json:"scope,omitempty"` // full, or slice
	ExportedAt  string          `json:"exported_at,omitempty"`
	Note        string          `json:"note,omitempty"`
	From        uint64          `json:"from,omitempty"`
	To          uint64          `json:"to,omitempty"`
	Hashes      [][]byte        `json:"hashes,omitempty"`
	Entry       *Entry          `json:"entry,omitempty"`
	Canonical   string          `json:"canonical,omitempty"` // the entry as hashed: leaf = SHA-256(0x00 || canonical)
	LeafHash    string          `json:"leaf_hash,omitempty"`
	Proof       *InclusionProof `json:"proof,omitempty"`
	Events      uint64          `json:"events,omitempty"`
	VerifierKey string          `json:"verifier_key,omitempty"` // for information: verifiers use the key they trust
}

// Export writes the events f selects, oldest first, as JSON Lines: a header,
// every checkpoint with consistency proofs between them, then each event with
// its canonical bytes and its inclusion proof in the latest checkpoint. With
// no filter but UpTo the export is the whole log ("full") and a verifier
// recomputes chain and tree; otherwise it is a "slice" checked by its proofs.
// With UpTo set to a checkpoint's size, the export stops there: every event
// in it is covered by a signed checkpoint.
func (l *Log) Export(ctx context.Context, w io.Writer, f Filter) (uint64, error) {
	where, args, err := f.where()
	if err != nil {
		return 0, err
	}
	if f.UpTo > 0 {
		args = append(args, int64(f.UpTo))
		where += " AND leaf_index < $" + strconv.Itoa(len(args))
	}
	full := f == (Filter{UpTo: f.UpTo})
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	scope := "slice"
	if full {
		scope = "full"
	}
	if err := enc.Encode(ExportLine{Type: "header", Origin: l.origin, Scope: scope, ExportedAt: time.Now().UTC().Format(time.RFC3339), VerifierKey: l.vkey}); err != nil {
		return 0, err
	}
	upTo := int64(-1)
	if f.UpTo > 0 {
		upTo = int64(f.UpTo)
	}
	rows, err := l.db.Pool.Query(ctx, `SELECT size, note FROM audit_checkpoints WHERE $1 < 0 OR size <= $1 ORDER BY size`, upTo)
	if err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "audit: read checkpoints", err)
	}
	var sizes []uint64
	for rows.Next() {
		var size int64
		var n string
		if err := rows.Scan(&size, &n); err != nil {
			rows.Close()
			return 0, kho.WrapError(kho.EUNAVAILABLE, "audit: read checkpoints", err)
		}
		sizes = append(sizes, uint64(size))
		if err := enc.Encode(ExportLine{Type: "checkpoint", Note: n}); err != nil {
			rows.Close()
			return 0, err
		}
	}
	rows.Close()
	for i := 1; i < len(sizes); i++ {
		p, err := l.Consistency(ctx, sizes[i-1], sizes[i])
		if err != nil {
			return 0, err
		}
		if err := enc.Encode(ExportLine{Type: "consistency", From: sizes[i-1], To: sizes[i], Hashes: p}); err != nil {
			return 0, err
		}
	}
	var latest uint64
	if len(sizes) > 0 {
		latest = sizes[len(sizes)-1]
	}
	var n uint64
	err = l.scanEntries(ctx, where+" ORDER BY leaf_index", args, func(e *Entry, leaf []byte) error {
		line := ExportLine{Type: "event", Entry: e, Canonical: canonical(e), LeafHash: leafHex(leaf)}
		if e.Index < latest {
			p, err := l.Inclusion(ctx, e.Index, latest)
			if err != nil {
				return err
			}
			line.Proof = p
		}
		n++
		return enc.Encode(line)
	})
	if err != nil {
		return n, err
	}
	if err := enc.Encode(ExportLine{Type: "end", Events: n}); err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// VerifyExport checks a JSON Lines export with only the log's public key and
// origin: checkpoint signatures, consistency between them, every inclusion
// proof, and, for a full export, the chain and the tree from the first event.
// It names the first bad event.
func VerifyExport(r io.Reader, vkey, origin string) (*Result, error) {
	vf, err := NewVerifier(vkey, origin)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var sawEnd, sawHeader bool
	var ended uint64
	var scope string
	for line := 1; ; line++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return nil, kho.Errorf(kho.EINVALID, "export line %d is not JSON", line)
		}
		var l ExportLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, kho.Errorf(kho.EINVALID, "export line %d is not an export line", line)
		}
		switch l.Type {
		case "header":
			if sawHeader {
				return nil, kho.Errorf(kho.EINVALID, "export line %d is a second header", line)
			}
			sawHeader, scope = true, l.Scope
			if l.Origin != origin {
				return nil, kho.Errorf(kho.EINVALID, "the export is of log %q, not %q", l.Origin, origin)
			}
			if scope != "full" && scope != "slice" {
				return nil, kho.Errorf(kho.EINVALID, "the export's scope is %q, not full or slice", scope)
			}
			vf.SetScope(scope == "full")
		case "checkpoint":
			vf.AddCheckpoint(l.Note)
		case "consistency":
			vf.AddConsistency(l.From, l.To, l.Hashes)
		case "event":
			if !sawHeader {
				return nil, kho.Errorf(kho.EINVALID, "export line %d comes before the header", line)
			}
			if l.Entry == nil {
				return nil, kho.Errorf(kho.EINVALID, "export line %d has no event", line)
			}
			leaf, err := hexDecode(l.LeafHash)
			if err != nil {
				return nil, kho.Errorf(kho.EINVALID, "export line %d has a malformed leaf hash", line)
			}
			// What a reader sees (entry) must be exactly what was hashed
			// (canonical): key for key, as any JSON reader reads them.
			if !sameJSON(servedEntry(raw), l.Canonical) {
				vf.fail(l.Entry.Index, l.Entry.ID, "the entry shown differs from its canonical bytes")
			}
			if scope == "slice" && l.Proof == nil {
				vf.fail(l.Entry.Index, l.Entry.ID, "an event of a slice comes without its inclusion proof")
			}
			vf.AddEntry(l.Entry, leaf, l.Proof)
		case "end":
			sawEnd, ended = true, l.Events
		default:
			return nil, kho.Errorf(kho.EINVALID, "export line %d has unknown type %q", line, l.Type)
		}
	}
	if !sawHeader {
		return nil, kho.Errorf(kho.EINVALID, "the export has no header")
	}
	res := vf.Finish()
	if !sawEnd && res.First == nil {
		res.First = &Problem{Index: res.Events, Reason: "the export is truncated (no end line)"}
	}
	if sawEnd && ended != res.Events && res.First == nil {
		res.First = &Problem{Index: res.Events, Reason: "the export's end line counts another number of events"}
	}
	if scope == "full" && res.Events == 0 && res.First == nil {
		res.First = &Problem{Index: 0, Reason: "a full export holds no event"}
	}
	if res.Outside > 0 && res.First == nil {
		res.First = &Problem{Index: res.Covered, Reason: fmt.Sprintf("%d events lie beyond the last signed checkpoint (which covers events 0 to %d): nothing proves them", res.Outside, int64(res.Covered)-1)}
	}
	return &res, nil
}

// servedEntry returns the raw "entry" member of an export line.
func servedEntry(line json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return nil
	}
	return m["entry"]
}

// sameJSON reports whether a JSON object and a canonical text hold the same
// keys (exactly, case included) and values. Go's decoder matches keys to
// fields regardless of case, and keeps the last of duplicates, while other
// readers may keep the first: only a key-exact comparison shows that every
// reader sees what was hashed.
func sameJSON(served json.RawMessage, canonicalText string) bool {
	if canonicalText == "" || len(served) == 0 {
		return false
	}
	if _, dup := kho.DuplicateKey(served); dup {
		return false
	}
	var a, b map[string]any
	if json.Unmarshal(served, &a) != nil || json.Unmarshal([]byte(canonicalText), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

// Anomaly is a pattern a security officer should look at.
type Anomaly struct {
	Kind     string  `json:"kind"` // agency_spike, officer_breadth, denial_spike
	Agency   string  `json:"agency,omitempty"`
	Staff    string  `json:"staff,omitempty"`
	Observed int     `json:"observed"`
	Baseline float64 `json:"baseline"`
	Window   string  `json:"window"`
	Detail   string  `json:"detail"`
}

// Thresholds of the anomaly flags. A flag needs both the absolute minimum and
// the multiple of the baseline.
const (
	SpikeFactor         = 3
	AgencySpikeMinimum  = 10 // document reads by one agency in 24 h
	OfficerSubjectLimit = 20 // distinct stores one officer touches in 1 h
	DenialSpikeMinimum  = 10 // refusals in 1 h
)

// Anomalies flags, as of now: an agency reading far above its own 7-day daily
// baseline, an officer touching many stores within an hour, and a spike of
// refusals against the previous day's hourly baseline.
func (l *Log) Anomalies(ctx context.Context, now time.Time) ([]Anomaly, error) {
	out := []Anomaly{}
	rows, err := l.db.Pool.Query(ctx, `SELECT actor_agency,
			count(*) FILTER (WHERE occurred_at >= $1::timestamptz - interval '24 hours') AS recent,
			count(*) FILTER (WHERE occurred_at < $1::timestamptz - interval '24 hours') / 7.0 AS baseline
		FROM audit_events
		WHERE action = 'document.read' AND outcome = 'success' AND actor_agency IS NOT NULL
		  AND occurred_at >= $1::timestamptz - interval '8 days' AND occurred_at < $1::timestamptz
		GROUP BY actor_agency`, now)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: anomalies", err)
	}
	for rows.Next() {
		var a Anomaly
		if err := rows.Scan(&a.Agency, &a.Observed, &a.Baseline); err != nil {
			rows.Close()
			return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: anomalies", err)
		}
		if a.Observed > AgencySpikeMinimum && float64(a.Observed) > SpikeFactor*a.Baseline {
			a.Kind, a.Window = "agency_spike", "24h"
			a.Detail = "document reads in the last 24 hours far above the agency's daily average of the week before"
			out = append(out, a)
		}
	}
	rows.Close()
	rows, err = l.db.Pool.Query(ctx, `SELECT actor_staff, coalesce(actor_agency, ''), count(DISTINCT subject_handle)
		FROM audit_events WHERE actor_staff IS NOT NULL AND subject_handle IS NOT NULL
		  AND occurred_at >= $1::timestamptz - interval '1 hour' AND occurred_at < $1::timestamptz
		GROUP BY actor_staff, actor_agency HAVING count(DISTINCT subject_handle) > $2`, now, OfficerSubjectLimit)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: anomalies", err)
	}
	for rows.Next() {
		a := Anomaly{Kind: "officer_breadth", Window: "1h", Baseline: OfficerSubjectLimit,
			Detail: "one officer touched the stores of many subjects within an hour"}
		if err := rows.Scan(&a.Staff, &a.Agency, &a.Observed); err != nil {
			rows.Close()
			return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: anomalies", err)
		}
		out = append(out, a)
	}
	rows.Close()
	var recent int
	var baseline float64
	if err := l.db.Pool.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE occurred_at >= $1::timestamptz - interval '1 hour'),
			count(*) FILTER (WHERE occurred_at < $1::timestamptz - interval '1 hour') / 24.0
		FROM audit_events WHERE outcome = 'denied' AND occurred_at >= $1::timestamptz - interval '25 hours' AND occurred_at < $1::timestamptz`, now).Scan(&recent, &baseline); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "audit: anomalies", err)
	}
	if recent > DenialSpikeMinimum && float64(recent) > SpikeFactor*baseline {
		out = append(out, Anomaly{Kind: "denial_spike", Observed: recent, Baseline: baseline, Window: "1h",
			Detail: "refusals in the last hour far above the hourly average of the day before"})
	}
	return out, nil
}
