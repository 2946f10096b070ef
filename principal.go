package kho

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// PrincipalKind is the role in which a caller acts.
type PrincipalKind string

// The kinds of caller kho knows.
const (
	PrincipalCitizen         PrincipalKind = "citizen"
	PrincipalBusinessRep     PrincipalKind = "business_rep"
	PrincipalAgency          PrincipalKind = "agency"
	PrincipalAgencyOfficer   PrincipalKind = "agency_officer"
	PrincipalSecurityOfficer PrincipalKind = "security_officer"
	PrincipalOperator        PrincipalKind = "operator"
)

// Claims of a bearer token that name the principal, besides the registered
// ones (iss, sub, aud, exp, nbf, iat, jti). sub is the person's personal
// identification number, the agency's code, or the staff identifier.
const (
	ClaimKind     = "kho_kind"     // a PrincipalKind
	ClaimAgency   = "kho_agency"   // agency code, for agencies and their officers
	ClaimBusiness = "kho_business" // enterprise code, for business representatives
)

// PrincipalKinds lists every kind, in a stable order.
var PrincipalKinds = []PrincipalKind{
	PrincipalCitizen, PrincipalBusinessRep, PrincipalAgency,
	PrincipalAgencyOfficer, PrincipalSecurityOfficer, PrincipalOperator,
}

// Principal is the authenticated caller of one request. Exactly one
// authentication middleware makes it; handlers and services only read it.
//
// Which fields are set depends on Kind:
//
//	citizen          Person
//	business_rep     Person (the representative) and Business
//	agency           Agency (a system acting for the agency)
//	agency_officer   Agency and Staff
//	security_officer Staff
//	operator         Staff
type Principal struct {
	Kind     PrincipalKind
	Person   SubjectID  // the natural person acting, when a citizen
	Business SubjectID  // the business represented
	Agency   AgencyCode // the agency acting or employing the officer
	Staff    StaffID    // the officer's or operator's identifier

	Issuer    string    // who vouched for the caller
	TokenID   string    // the token's jti: the handle logs use
	ExpiresAt time.Time // when the credential stops being valid
	// Scoped is set for an access token from kho's token endpoint: then
	// Scope (space-separated, as in OAuth) bounds what an agency's system
	// may do. Identity providers' tokens carry no scope.
	Scoped bool
	Scope  string
}

// HasScope says whether a scoped principal's scope includes s.
func (p Principal) HasScope(s string) bool {
	return slices.Contains(strings.Fields(p.Scope), s)
}

// Validate checks that the fields Kind needs are present and well formed, and
// that no field of another kind is set.
func (p Principal) Validate() error {
	type need struct{ person, business, agency, staff bool }
	var n need
	switch p.Kind {
	case PrincipalCitizen:
		n = need{person: true}
	case PrincipalBusinessRep:
		n = need{person: true, business: true}
	case PrincipalAgency:
		n = need{agency: true}
	case PrincipalAgencyOfficer:
		n = need{agency: true, staff: true}
	case PrincipalSecurityOfficer, PrincipalOperator:
		n = need{staff: true}
	default:
		return Errorf(EINVALID, "unknown principal kind %q", p.Kind)
	}
	if n.person != (p.Person != "") || n.business != (p.Business != "") ||
		n.agency != (p.Agency != "") || n.staff != (p.Staff != "") {
		return Errorf(EINVALID, "principal of kind %s has missing or extra identifiers", p.Kind)
	}
	if n.person {
		if err := p.Person.Validate(); err != nil {
			return err
		}
		if p.Person.Kind() != SubjectCitizen {
			return Errorf(EINVALID, "a person must be identified by a personal identification number")
		}
	}
	if n.business {
		if err := p.Business.Validate(); err != nil {
			return err
		}
		if p.Business.Kind() != SubjectBusiness {
			return Errorf(EINVALID, "a business must be identified by an enterprise code")
		}
	}
	if n.agency {
		if err := p.Agency.Validate(); err != nil {
			return err
		}
	}
	if n.staff {
		if err := p.Staff.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// ActsFor returns the subject whose store the principal acts on as its owner:
// the citizen themself, or the represented business. Others own no store.
func (p Principal) ActsFor() (SubjectID, bool) {
	switch p.Kind {
	case PrincipalCitizen:
		return p.Person, true
	case PrincipalBusinessRep:
		return p.Business, true
	}
	return "", false
}

// LogValue makes a principal safe to log: kind, agency and token id only. A
// personal identification number or enterprise code never reaches a log.
func (p Principal) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", string(p.Kind))}
	if p.Agency != "" {
		attrs = append(attrs, slog.String("agency", string(p.Agency)))
	}
	if p.TokenID != "" {
		attrs = append(attrs, slog.String("token_id", p.TokenID))
	}
	return slog.GroupValue(attrs...)
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the authentication middleware put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
