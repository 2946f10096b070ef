package kho

import "time"

// Capacity is how a principal stands to a store it acts on. It is never taken
// from a token: the caller's own identifier makes it "self", and every other
// capacity is a delegation read from PostgreSQL with its validity period.
type Capacity string

// Capacities.
const (
	CapacityNone       Capacity = ""                     // no relation: the store is someone else's
	CapacitySelf       Capacity = "self"                 // the citizen's own store
	CapacityGuardian   Capacity = "guardian"             // a guardian acting for a ward
	CapacityLegalRep   Capacity = "legal_representative" // a business's legal representative
	CapacityAuthorised Capacity = "authorised"           // a person a business authorised
)

// OwnerSide reports whether c acts for the store's owner.
func (c Capacity) OwnerSide() bool { return c != CapacityNone }

// AdultAge is the age of majority; consents of younger persons need their
// guardian's. ChildConsentAge is the age from which a child's own consent is
// needed as well (Decree 13/2023/NĐ-CP, Article 20).
const (
	AdultAge        = 18
	ChildConsentAge = 7
)

// BirthYear reads the year of birth a personal identification number
// encodes: its fourth digit gives the century (0–1: 1900s, 2–3: 2000s, 4–5:
// 2100s, ...), its fifth and sixth the year within it. ok is false for an
// enterprise code.
func (id SubjectID) BirthYear() (year int, ok bool) {
	if id.Validate() != nil || id.Kind() != SubjectCitizen {
		return 0, false
	}
	s := string(id)
	return 1900 + 100*int((s[3]-'0')/2) + int(s[4]-'0')*10 + int(s[5]-'0'), true
}

// AgeBounds returns the youngest and oldest the person can be at now, from
// the birth year alone (a number does not say the day).
func (id SubjectID) AgeBounds(now time.Time) (youngest, oldest int, ok bool) {
	y, ok := id.BirthYear()
	if !ok {
		return 0, 0, false
	}
	oldest = now.Year() - y
	return max(oldest-1, 0), oldest, true
}

// Minor reports whether the person is certainly under AdultAge at now. In
// the year of the 18th birthday the number cannot tell; a current
// guardianship in PostgreSQL (which ends on that birthday) decides then.
func (id SubjectID) Minor(now time.Time) bool {
	_, oldest, ok := id.AgeBounds(now)
	return ok && oldest < AdultAge
}

// ChildMustConsent reports whether a ward may be a child of ChildConsentAge
// or older at now, so that the ward's own consent is needed beside the
// guardian's. Unsure means yes: asking the child as well is the side the law
// requires. An adult under guardianship (for lost capacity) is not asked.
func (id SubjectID) ChildMustConsent(now time.Time) bool {
	youngest, oldest, ok := id.AgeBounds(now)
	return ok && youngest < AdultAge && oldest >= ChildConsentAge
}
