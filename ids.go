package kho

import (
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SubjectKind says whether a store belongs to a citizen or a business.
type SubjectKind string

// The two kinds of subject that own a store.
const (
	SubjectCitizen  SubjectKind = "citizen"
	SubjectBusiness SubjectKind = "business"
)

// SubjectID identifies the owner of a store: a citizen's 12-digit personal
// identification number or a business's enterprise code (10 digits, or 13 for
// a branch or dependent unit). It is personal data: it lives in PostgreSQL's
// subject table and in tokens, never in logs, object names or Vault key names,
// which use the subject's opaque handle instead.
type SubjectID string

// ParseSubjectID normalises s (surrounding spaces, the hyphen of a branch
// code such as 0101234567-001) and validates it.
func ParseSubjectID(s string) (SubjectID, error) {
	s = strings.TrimSpace(s)
	if len(s) == 14 && s[10] == '-' {
		s = s[:10] + s[11:]
	}
	id := SubjectID(s)
	if err := id.Validate(); err != nil {
		return "", err
	}
	return id, nil
}

// Kind tells the subject kind from the identifier's length. It is meaningful
// only for an identifier that passed Validate.
func (id SubjectID) Kind() SubjectKind {
	if len(id) == 12 {
		return SubjectCitizen
	}
	return SubjectBusiness
}

// Validate checks the form of the identifier. Its messages never repeat the
// identifier, so they can be shown and logged.
func (id SubjectID) Validate() error {
	s := string(id)
	if !allDigits(s) {
		return Errorf(EINVALID, "subject identifier must contain digits only")
	}
	switch len(s) {
	case 12:
		// The first three digits are the province of birth registration,
		// 001 to 096.
		if p := (int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')); p < 1 || p > 96 {
			return Errorf(EINVALID, "personal identification number has an unknown province code")
		}
		// The fourth digit gives the century of birth, the next two the
		// year: nobody is born in the future.
		if y := 1900 + 100*int((s[3]-'0')/2) + int(s[4]-'0')*10 + int(s[5]-'0'); y > time.Now().Year() {
			return Errorf(EINVALID, "personal identification number has a year of birth in the future")
		}
		return nil
	case 10, 13:
		return nil
	default:
		return Errorf(EINVALID, "subject identifier must be a 12-digit personal identification number or a 10- or 13-digit enterprise code")
	}
}

// AgencyCode identifies a state agency or unit by its code in the national
// list of administrative units, for example G09 or 000.06.16.G09.
type AgencyCode string

var agencyCodeRE = regexp.MustCompile(`^[A-Z0-9]{1,8}(\.[A-Z0-9]{1,8}){0,4}$`)

// Validate checks the form of the code.
func (c AgencyCode) Validate() error {
	if len(c) > 40 || !agencyCodeRE.MatchString(string(c)) {
		return Errorf(EINVALID, "agency code must be upper-case letters and digits in dot-separated groups")
	}
	return nil
}

// StaffID identifies an agency officer, a security officer or an operator
// within the identity provider that vouches for them.
type StaffID string

var staffIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate checks the form of the identifier.
func (s StaffID) Validate() error {
	if !staffIDRE.MatchString(string(s)) {
		return Errorf(EINVALID, "staff identifier must be 1 to 64 letters, digits, dots, hyphens or underscores")
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CanonicalUUID says whether s is a UUID written as kho writes them:
// lower-case hex, hyphenated, 36 characters. Other spellings (upper case,
// braces, urn:uuid:) name nothing in kho.
func CanonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
