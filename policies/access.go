package policies

import (
	"kho"
)

// Owner describes whose store a document is in, for access decisions.
type Owner struct {
	Subject kho.SubjectID
}

// ownsStore reports whether p acts for the store's owner: the citizen
// themself, or a representative of the business.
func ownsStore(p kho.Principal, o Owner) bool {
	sub, ok := p.ActsFor()
	return ok && sub == o.Subject
}

// actsForAgency returns the agency p acts for, if any.
func actsForAgency(p kho.Principal) (kho.AgencyCode, bool) {
	switch p.Kind {
	case kho.PrincipalAgency, kho.PrincipalAgencyOfficer:
		return p.Agency, true
	}
	return "", false
}

// CanDeposit decides who may put a document in a store: an agency (its
// system or one of its officers) as the issuer, or the owner as a
// self-declared document. It returns the source the document gets.
func CanDeposit(p kho.Principal, o Owner) (kho.DocumentSource, error) {
	if _, ok := actsForAgency(p); ok {
		return kho.SourceAgencyIssued, nil
	}
	if ownsStore(p, o) {
		return kho.SourceSelfDeclared, nil
	}
	return "", kho.Errorf(kho.EFORBIDDEN, "only an agency or the store's owner may deposit a document")
}

// CanRead decides who may read a document's metadata and content directly:
// the store's owner and the agency that issued it. Any other agency fetches
// for a procedure, under the reuse policy and consent (package consent). A
// refusal is ENOTFOUND, so a caller cannot learn that a document exists.
func CanRead(p kho.Principal, o Owner, d *kho.Document) error {
	if ownsStore(p, o) {
		return nil
	}
	if a, ok := actsForAgency(p); ok && d.Source == kho.SourceAgencyIssued && a == d.Issuer {
		return nil
	}
	return kho.Errorf(kho.ENOTFOUND, "document not found")
}

// ListScope says which of a store's documents a listing shows.
type ListScope struct {
	All    bool           // the owner sees every document
	Issuer kho.AgencyCode // an agency sees what it issued
}

// CanList decides what p may list in a store.
func CanList(p kho.Principal, o Owner) (ListScope, error) {
	if ownsStore(p, o) {
		return ListScope{All: true}, nil
	}
	if a, ok := actsForAgency(p); ok {
		return ListScope{Issuer: a}, nil
	}
	return ListScope{}, kho.Errorf(kho.EFORBIDDEN, "only the owner or an agency may list a store")
}

// CanChange decides who may supersede or revoke a document: the agency that
// issued it, for agency-issued documents; the owner, for self-declared ones.
func CanChange(p kho.Principal, o Owner, d *kho.Document) error {
	if d.Source == kho.SourceSelfDeclared && ownsStore(p, o) {
		return nil
	}
	if a, ok := actsForAgency(p); ok && d.Source == kho.SourceAgencyIssued && a == d.Issuer {
		return nil
	}
	if err := CanRead(p, o, d); err != nil {
		return err
	}
	return kho.Errorf(kho.EFORBIDDEN, "only the issuer of a document may supersede or revoke it")
}

// CanErase decides who may have a store crypto-shredded: its owner, or an
// operator carrying out a decision.
func CanErase(p kho.Principal, o Owner) error {
	if ownsStore(p, o) || p.Kind == kho.PrincipalOperator {
		return nil
	}
	return kho.Errorf(kho.EFORBIDDEN, "only the owner or an operator may erase a store")
}

// CanHold decides who may place a legal hold on a store: an agency.
func CanHold(p kho.Principal) (kho.AgencyCode, error) {
	if a, ok := actsForAgency(p); ok {
		return a, nil
	}
	return "", kho.Errorf(kho.EFORBIDDEN, "only an agency may place a legal hold")
}

// CanAudit decides who may search, export and verify the audit trail: a
// security officer. Operators run the system and are audited by it, so they
// may not.
func CanAudit(p kho.Principal) error {
	if p.Kind == kho.PrincipalSecurityOfficer {
		return nil
	}
	return kho.Errorf(kho.EFORBIDDEN, "only a security officer may search the audit trail")
}
