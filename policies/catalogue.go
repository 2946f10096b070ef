package policies

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	"kho"
)

//go:embed catalogue/catalogue.json
var catalogueFiles embed.FS

// DocumentType is a catalogue entry for a kind of document.
type DocumentType struct {
	Code        string   `json:"code"`
	NameVI      string   `json:"name_vi"`
	NameEN      string   `json:"name_en"`
	IssuerKinds []string `json:"issuer_kinds"`
	// SubjectKinds are the stores the type belongs in: citizen, business
	// or both (default: citizen).
	SubjectKinds   []string `json:"subject_kinds,omitempty"`
	ValidityMonths int      `json:"validity_months,omitempty"`
	Sample         bool     `json:"sample"`
}

// StoreKinds returns the kinds of store the type belongs in.
func (t *DocumentType) StoreKinds() []string {
	if len(t.SubjectKinds) == 0 {
		return []string{string(kho.SubjectCitizen)}
	}
	return t.SubjectKinds
}

// Procedure is a catalogue entry for an administrative procedure.
type Procedure struct {
	Code         string   `json:"code"`
	NameVI       string   `json:"name_vi"`
	NameEN       string   `json:"name_en"`
	HandlerKinds []string `json:"handler_kinds"`
	Requires     []string `json:"requires"`
	Optional     []string `json:"optional"`
	Sample       bool     `json:"sample"`
}

// Types returns every document type the procedure uses, required first.
func (p *Procedure) Types() []string { return append(append([]string{}, p.Requires...), p.Optional...) }

// Catalogue is the versioned list of procedures and document types.
type Catalogue struct {
	Version       string         `json:"version"`
	Note          string         `json:"note,omitempty"`
	AgencyKinds   []string       `json:"agency_kinds"`
	DocumentTypes []DocumentType `json:"document_types"`
	Procedures    []Procedure    `json:"procedures"`
	SHA256        string         `json:"-"`
}

var catalogueCodeRE = regexp.MustCompile(`^[A-Z0-9][A-Z0-9._-]{0,39}$`)

// ParseCatalogue decodes and validates a catalogue: unique codes, known
// agency kinds, every referenced document type defined, names in both
// languages.
func ParseCatalogue(b []byte) (*Catalogue, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Catalogue
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	sum := sha256.Sum256(b)
	c.SHA256 = hex.EncodeToString(sum[:])
	if c.Version == "" {
		return nil, fmt.Errorf("catalogue: a version is required")
	}
	kinds := map[string]bool{}
	for _, k := range c.AgencyKinds {
		kinds[k] = true
	}
	checkKinds := func(what string, ks []string) error {
		if len(ks) == 0 {
			return fmt.Errorf("catalogue: %s names no agency kind", what)
		}
		for _, k := range ks {
			if !kinds[k] {
				return fmt.Errorf("catalogue: %s names unknown agency kind %q", what, k)
			}
		}
		return nil
	}
	types := map[string]bool{}
	for _, t := range c.DocumentTypes {
		if !catalogueCodeRE.MatchString(t.Code) || types[t.Code] {
			return nil, fmt.Errorf("catalogue: document type code %q is malformed or repeated", t.Code)
		}
		if t.NameVI == "" || t.NameEN == "" {
			return nil, fmt.Errorf("catalogue: document type %s needs a Vietnamese and an English name", t.Code)
		}
		if err := checkKinds("document type "+t.Code, t.IssuerKinds); err != nil {
			return nil, err
		}
		for _, k := range t.SubjectKinds {
			if k != string(kho.SubjectCitizen) && k != string(kho.SubjectBusiness) {
				return nil, fmt.Errorf("catalogue: document type %s names unknown subject kind %q", t.Code, k)
			}
		}
		types[t.Code] = true
	}
	procs := map[string]bool{}
	for _, p := range c.Procedures {
		if !catalogueCodeRE.MatchString(p.Code) || procs[p.Code] {
			return nil, fmt.Errorf("catalogue: procedure code %q is malformed or repeated", p.Code)
		}
		if p.NameVI == "" || p.NameEN == "" {
			return nil, fmt.Errorf("catalogue: procedure %s needs a Vietnamese and an English name", p.Code)
		}
		if err := checkKinds("procedure "+p.Code, p.HandlerKinds); err != nil {
			return nil, err
		}
		if len(p.Requires) == 0 {
			return nil, fmt.Errorf("catalogue: procedure %s requires no document", p.Code)
		}
		seen := map[string]bool{}
		for _, t := range p.Types() {
			if !types[t] {
				return nil, fmt.Errorf("catalogue: procedure %s uses undefined document type %s", p.Code, t)
			}
			if seen[t] {
				return nil, fmt.Errorf("catalogue: procedure %s lists document type %s twice", p.Code, t)
			}
			seen[t] = true
		}
		procs[p.Code] = true
	}
	return &c, nil
}

// DefaultCatalogue returns the sample catalogue shipped with kho.
func DefaultCatalogue() (*Catalogue, error) {
	b, err := catalogueFiles.ReadFile("catalogue/catalogue.json")
	if err != nil {
		return nil, err
	}
	return ParseCatalogue(b)
}

// Procedure returns the procedure with code, if any.
func (c *Catalogue) Procedure(code string) (*Procedure, bool) {
	i := slices.IndexFunc(c.Procedures, func(p Procedure) bool { return p.Code == code })
	if i < 0 {
		return nil, false
	}
	return &c.Procedures[i], true
}
