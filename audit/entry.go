package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
)

// Entry is an event as it is hashed, exported and verified. Its JSON, with
// the fields in this order and Details normalised (keys sorted), is the
// Merkle leaf; Prev is the leaf hash of the entry before it (empty for the
// first). Times are UTC with microsecond precision, as PostgreSQL keeps them.
type Entry struct {
	V           int             `json:"v"`
	Index       uint64          `json:"index"`
	Prev        string          `json:"prev"`
	ID          string          `json:"id"`
	Time        string          `json:"time"`
	Action      string          `json:"action"`
	Outcome     string          `json:"outcome"`
	ActorKind   string          `json:"actor_kind"`
	ActorAgency string          `json:"actor_agency,omitempty"`
	ActorStaff  string          `json:"actor_staff,omitempty"`
	ActorRef    string          `json:"actor_ref,omitempty"`
	ActingFor   string          `json:"acting_for,omitempty"`
	Subject     string          `json:"subject,omitempty"`
	Document    string          `json:"document,omitempty"`
	Purpose     string          `json:"purpose,omitempty"`
	ConsentID   string          `json:"consent_id,omitempty"`
	LegalBasis  string          `json:"legal_basis,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	RequestID   string          `json:"request_id,omitempty"`
	Details     json.RawMessage `json:"details"`
}

// hasher is RFC 6962's, as in Certificate Transparency.
var hasher = rfc6962.DefaultHasher

// timeFormat is fixed so the same instant always hashes the same.
const timeFormat = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(timeFormat) }

// normalizeDetails re-encodes details with sorted keys, so the bytes do not
// depend on how they were stored (PostgreSQL's jsonb reorders keys).
func normalizeDetails(raw []byte) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage(`{}`), nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("audit: details are not JSON: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Bytes returns the entry's canonical encoding: the leaf data.
func (e *Entry) Bytes() ([]byte, error) {
	d, err := normalizeDetails(e.Details)
	if err != nil {
		return nil, err
	}
	c := *e
	c.Details = d
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// LeafHash returns the entry's RFC 6962 leaf hash.
func (e *Entry) LeafHash() ([]byte, error) {
	b, err := e.Bytes()
	if err != nil {
		return nil, err
	}
	return hasher.HashLeaf(b), nil
}

func hexOrEmpty(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return hex.EncodeToString(b)
}

func hexDecode(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return hex.DecodeString(s)
}
