package kho

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// SubjectHandle is the opaque identifier of a subject's store: a random UUID
// that stands for the subject everywhere outside PostgreSQL's subject table
// (Vault key names, object names, audit events, logs, URLs).
type SubjectHandle string

// Validate checks that h is a UUID.
func (h SubjectHandle) Validate() error {
	if !CanonicalUUID(string(h)) {
		return Errorf(EINVALID, "subject handle must be a UUID")
	}
	return nil
}

// DocumentID identifies one version of a document: a UUIDv7, so ids sort by
// deposit time.
type DocumentID string

// NewDocumentID returns a fresh UUIDv7.
func NewDocumentID() DocumentID { return DocumentID(uuid.Must(uuid.NewV7()).String()) }

// Validate checks that id is a UUID.
func (id DocumentID) Validate() error {
	if !CanonicalUUID(string(id)) {
		return Errorf(EINVALID, "document id must be a UUID")
	}
	return nil
}

// DocumentStatus is where a document stands in its life.
type DocumentStatus string

// Statuses. Expired is not stored: a valid document whose validity period has
// ended is reported as expired.
const (
	StatusValid      DocumentStatus = "valid"
	StatusSuperseded DocumentStatus = "superseded"
	StatusRevoked    DocumentStatus = "revoked"
	StatusExpired    DocumentStatus = "expired"
	StatusErased     DocumentStatus = "erased"
)

// DocumentSource says who vouches for a document.
type DocumentSource string

// Sources.
const (
	SourceAgencyIssued DocumentSource = "agency_issued" // deposited by the agency that issued it
	SourceSelfDeclared DocumentSource = "self_declared" // uploaded by the subject
)

// Date is a calendar date (YYYY-MM-DD in JSON), without time zone.
type Date struct{ time.Time }

// ParseDate reads YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Date{}, Errorf(EINVALID, "date %q must be YYYY-MM-DD", truncate(s, 20))
	}
	return Date{t}, nil
}

// String formats the date as YYYY-MM-DD.
func (d Date) String() string { return d.Format(time.DateOnly) }

// MarshalJSON writes YYYY-MM-DD.
func (d Date) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads YYYY-MM-DD.
func (d *Date) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return Errorf(EINVALID, "a date must be a string YYYY-MM-DD")
	}
	p, err := ParseDate(s)
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// DossierCode identifies a dossier received by a unit: its unit code, the
// receipt date (YYMMDD) and the daily sequence, e.g. 000.06.16.G09-231215-0001.
type DossierCode string

var dossierRE = regexp.MustCompile(`^([A-Z0-9]{1,8}(?:\.[A-Z0-9]{1,8}){0,4})-(\d{6})-(\d{4})$`)

// Validate checks the form and the receipt date.
func (c DossierCode) Validate() error {
	m := dossierRE.FindStringSubmatch(string(c))
	if m == nil {
		return Errorf(EINVALID, "dossier code must look like 000.06.16.G09-231215-0001 (unit code, receipt date YYMMDD, daily sequence)")
	}
	if _, err := time.Parse("060102", m[2]); err != nil {
		return Errorf(EINVALID, "dossier code has an impossible receipt date %s", m[2])
	}
	return nil
}

// Unit returns the code of the unit that received the dossier: the agency
// whose dossier it is. It is empty for a malformed code.
func (c DossierCode) Unit() string {
	m := dossierRE.FindStringSubmatch(string(c))
	if m == nil {
		return ""
	}
	return m[1]
}

// ResultCode returns the code of the n-th result issued for the dossier:
// <dossier code>-KQ<n>.
func (c DossierCode) ResultCode(n int) string { return fmt.Sprintf("%s-KQ%d", c, n) }

// Document is one version of a document in a subject's store.
type Document struct {
	ID      DocumentID     `json:"id"`
	Subject SubjectHandle  `json:"subject"`
	Type    string         `json:"type"`
	Name    string         `json:"name"`
	Number  string         `json:"number,omitempty"` // số, ký hiệu
	IssueOn Date           `json:"issued_on"`
	Issuer  AgencyCode     `json:"issuer,omitempty"` // empty for self-declared
	Source  DocumentSource `json:"source"`
	Summary string         `json:"summary,omitempty"`

	ValidFrom  *Date  `json:"valid_from,omitempty"`
	ValidUntil *Date  `json:"valid_until,omitempty"`
	Scope      string `json:"scope,omitempty"`

	DossierCode   DossierCode `json:"dossier_code,omitempty"`
	ProcedureCode string      `json:"procedure_code,omitempty"`
	ResultCode    string      `json:"result_code,omitempty"`

	Status       DocumentStatus `json:"status"`
	RevokeReason string         `json:"revoke_reason,omitempty"`

	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"` // hex, of the plaintext

	ChainID      DocumentID  `json:"chain_id"` // the first version's id
	Version      int         `json:"version"`
	Supersedes   *DocumentID `json:"supersedes,omitempty"`
	SupersededBy *DocumentID `json:"superseded_by,omitempty"`

	CreatedAt time.Time `json:"created_at"`
}

// EffectiveStatus reports expired for a valid document past its validity.
func (d *Document) EffectiveStatus(now time.Time) DocumentStatus {
	if d.Status == StatusValid && d.ValidUntil != nil && now.After(d.ValidUntil.AddDate(0, 0, 1)) {
		return StatusExpired
	}
	return d.Status
}

// DepositMetadata describes a document being deposited. It arrives as JSON
// from outside and is checked by ParseDepositMetadata.
type DepositMetadata struct {
	SubjectID     SubjectID   `json:"subject_id"`
	Type          string      `json:"type" required:"true"`
	Name          string      `json:"name" required:"true"`
	Number        string      `json:"number,omitempty"`
	IssuedOn      Date        `json:"issued_on" required:"true"`
	Summary       string      `json:"summary,omitempty"`
	ValidFrom     *Date       `json:"valid_from,omitempty"`
	ValidUntil    *Date       `json:"valid_until,omitempty"`
	Scope         string      `json:"scope,omitempty"`
	DossierCode   DossierCode `json:"dossier_code,omitempty"`
	ProcedureCode string      `json:"procedure_code,omitempty"`
	ResultNo      int         `json:"result_no,omitempty"`
	MediaType     string      `json:"media_type" required:"true"`
}

// MaxMetadataSize bounds the JSON of deposit metadata.
const MaxMetadataSize = 16 << 10

var codeRE = regexp.MustCompile(`^[A-Z0-9][A-Z0-9._-]{0,39}$`)

// ParseDepositMetadata decodes and validates deposit metadata. Unknown fields
// are refused, so a misspelt field is an error rather than silently lost.
func ParseDepositMetadata(b []byte) (*DepositMetadata, error) {
	if len(b) > MaxMetadataSize {
		return nil, Errorf(ETOOLARGE, "metadata is larger than %d bytes", MaxMetadataSize)
	}
	var m DepositMetadata
	if err := DecodeObject(b, &m); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every field; SubjectID may be empty (a subject uploading to
// their own store).
func (m *DepositMetadata) Validate() error {
	if m.SubjectID != "" {
		if err := m.SubjectID.Validate(); err != nil {
			return FieldErrorf("subject_id", "%s", ErrorMessage(err))
		}
	}
	if !codeRE.MatchString(m.Type) {
		return FieldErrorf("type", "type must be a catalogue code (upper-case letters, digits, . _ -)")
	}
	checks := []struct {
		field     string
		v         string
		min       int
		max       int
		multiline bool
	}{
		{"name", m.Name, 1, 500, false},
		{"number", m.Number, 0, 100, false},
		{"summary", m.Summary, 0, 4000, true},
		{"scope", m.Scope, 0, 500, true},
	}
	for _, c := range checks {
		if !utf8.ValidString(c.v) {
			return FieldErrorf(c.field, "%s is not valid UTF-8", c.field)
		}
		n := utf8.RuneCountInString(strings.TrimSpace(c.v))
		if n < c.min || utf8.RuneCountInString(c.v) > c.max {
			return FieldErrorf(c.field, "%s must have %d to %d characters", c.field, c.min, c.max)
		}
		if !PlainText(c.v, c.multiline) {
			return FieldErrorf(c.field, "%s contains control, invisible or direction-changing characters (or line breaks in a one-line field)", c.field)
		}
	}
	if err := m.checkDates(time.Now()); err != nil {
		return err
	}
	if m.DossierCode != "" {
		if err := m.DossierCode.Validate(); err != nil {
			return FieldErrorf("dossier_code", "%s", ErrorMessage(err))
		}
	}
	if m.ProcedureCode != "" && !codeRE.MatchString(m.ProcedureCode) {
		return FieldErrorf("procedure_code", "procedure_code must be a catalogue code")
	}
	if m.ResultNo < 0 || m.ResultNo > 999 {
		return FieldErrorf("result_no", "result_no must be between 1 and 999")
	}
	if m.ResultNo > 0 && m.DossierCode == "" {
		return FieldErrorf("dossier_code", "result_no needs the dossier_code it is a result of")
	}
	if !AllowedMediaType(m.MediaType) {
		return FieldErrorf("media_type", "media_type must be one of %s", strings.Join(AllowedMediaTypes(), ", "))
	}
	return nil
}

// PlainText reports whether s is valid UTF-8 without control characters
// (C0, DEL, C1; newlines and tabs only when multiline), line or paragraph
// separators, or format characters (Unicode category Cf: the marks that
// change the direction text is shown in, zero-width characters, tags),
// which can make a name, a purpose or a legal basis read as something it
// is not. Vietnamese needs none of them.
func PlainText(s string, multiline bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		switch {
		case multiline && (r == '\n' || r == '\t'):
			return false
		case unicode.IsControl(r), unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
			return true
		}
		return false
	})
}

// earliestDate is the earliest date a document kho keeps may carry.
var earliestDate = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

// checkDates checks that the dates make sense together and at now: a
// document is issued in the past (a day of slack for time zones), not
// before 1900; it is valid from no earlier than it was issued, and until no
// earlier than from then.
func (m *DepositMetadata) checkDates(now time.Time) error {
	if m.IssuedOn.IsZero() {
		return FieldErrorf("issued_on", "issued_on is required")
	}
	if m.IssuedOn.Before(earliestDate) || m.IssuedOn.After(now.AddDate(0, 0, 1)) {
		return FieldErrorf("issued_on", "issued_on must be a date between 1900-01-01 and today")
	}
	if m.ValidFrom != nil && m.ValidFrom.Before(m.IssuedOn.Time) {
		return FieldErrorf("valid_from", "valid_from is before issued_on")
	}
	if m.ValidUntil != nil && m.ValidUntil.Before(m.IssuedOn.Time) {
		return FieldErrorf("valid_until", "valid_until is before issued_on")
	}
	if m.ValidFrom != nil && m.ValidUntil != nil && m.ValidUntil.Before(m.ValidFrom.Time) {
		return FieldErrorf("valid_until", "valid_until is before valid_from")
	}
	if m.ValidUntil != nil && m.ValidUntil.After(m.IssuedOn.AddDate(200, 0, 0)) {
		return FieldErrorf("valid_until", "valid_until is more than 200 years after issued_on")
	}
	return nil
}

// mediaTypes maps each media type kho stores to the types Go's content
// sniffer (http.DetectContentType) reports for such files.
var mediaTypes = map[string][]string{
	"application/pdf":  {"application/pdf"},
	"image/jpeg":       {"image/jpeg"},
	"image/png":        {"image/png"},
	"application/zip":  {"application/zip"},
	"application/xml":  {"text/xml; charset=utf-8"},
	"application/json": {"text/plain; charset=utf-8"},
	"text/plain":       {"text/plain; charset=utf-8"},
}

// AllowedMediaType reports whether kho stores documents of type t.
func AllowedMediaType(t string) bool { _, ok := mediaTypes[t]; return ok }

// AllowedMediaTypes lists them, sorted.
func AllowedMediaTypes() []string {
	return []string{"application/json", "application/pdf", "application/xml", "application/zip", "image/jpeg", "image/png", "text/plain"}
}

// SniffMatches reports whether a file declared as declared may have content
// the sniffer reported as sniffed.
func SniffMatches(declared, sniffed string) bool {
	for _, s := range mediaTypes[declared] {
		if s == sniffed {
			return true
		}
	}
	return false
}

// Truncate shortens s to n bytes (on a rune boundary) with an ellipsis, for
// echoing a caller's input in a message.
func Truncate(s string, n int) string { return truncate(s, n) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
