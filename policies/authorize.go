package policies

import (
	"slices"

	"kho"
)

// Action is what a principal asks to do. Every route of the API maps to one
// of them, and Authorize is the only code that says yes or no.
type Action string

// Actions.
const (
	ResolveStore        Action = "store.resolve"           // learn the handle of a subject's store
	ListStore           Action = "store.list"              // list a store's documents
	ReadAccessLog       Action = "store.access_log"        // read every event on a store
	ListHolds           Action = "store.holds"             // see the legal holds on a store
	EraseStore          Action = "store.erase"             // crypto-shred a store
	PlaceHold           Action = "store.hold"              // place a legal hold
	ReleaseHold         Action = "store.hold_release"      // end a legal hold
	CheckAvailability   Action = "store.availability"      // which of a procedure's documents exist
	DepositDocument     Action = "document.deposit"        // put a document in a store
	ReadDocument        Action = "document.read"           // metadata, content and verification, directly
	AnswerDeposit       Action = "document.deposit_answer" // the metadata one's own deposit made, again, for its retry
	ChangeDocument      Action = "document.change"         // supersede or revoke
	FetchDocument       Action = "document.fetch"          // read for a procedure, under the reuse policy
	RequestConsent      Action = "consent.request"         // an agency asks a subject
	DecideConsent       Action = "consent.decide"          // grant, answer, pause, resume, revoke, list
	ReadConsent         Action = "consent.read"            // a consent, its history and receipt
	SearchAudit         Action = "audit.search"            // the security officer's view of the trail
	ReadUseReceipt      Action = "use_receipt.read"        // the proof of one admitted fetch
	AcknowledgeDeletion Action = "delivery.delete"         // the fetching agency says it deleted its copy
)

// Store is what a decision knows of a store, loaded from PostgreSQL by the
// caller (package postgres, Facts).
type Store struct {
	Handle  kho.SubjectHandle // empty when the store does not exist yet
	Subject kho.SubjectID
	Kind    kho.SubjectKind
	Exists  bool
	Erased  bool
	// Capacity is how the caller stands to this store: never from a token
	// claim, always from the caller's identifier and the current
	// delegations (guardianships, business representatives).
	Capacity kho.Capacity
	// Ward is set when the owner is a minor or under a current
	// guardianship: a consent needs the guardian's agreement.
	Ward bool
	// ChildMustConsent is set for a ward old enough that their own consent
	// is needed beside the guardian's.
	ChildMustConsent bool
}

// ActingFor is the capacity an audit event records when the actor is not
// the subject themself ("" for the subject, or no store).
func (st *Store) ActingFor() string {
	if st == nil || st.Capacity == kho.CapacitySelf {
		return ""
	}
	return string(st.Capacity)
}

// Agency is the caller's agency as registered in kho.
type Agency struct {
	Code kho.AgencyCode
	Kind string
}

// Resource is every fact a decision may need; each action reads only its
// own. A nil pointer means "there is no such thing".
type Resource struct {
	Store     *Store
	Agency    *Agency       // the caller's agency, when registered
	Document  *kho.Document // the document acted on
	DocType   *DocumentType // for a deposit: the catalogue's entry for its type
	Deposit   *kho.DepositMetadata
	Procedure *Procedure     // for availability and consent requests
	Holder    kho.AgencyCode // for a hold release: the agency that placed it
	Grantee   kho.AgencyCode // for consent actions: the consent's grantee
}

// ListScope says which of a store's documents a listing shows.
type ListScope struct {
	All    bool           // the owner's side sees every document
	Issuer kho.AgencyCode // an agency sees what it issued
}

// Decision is Authorize's answer. A refusal carries the error code the API
// answers with, a stable reason and a message safe to show.
type Decision struct {
	Allowed bool
	Code    string
	Reason  string
	Message string

	Source kho.DocumentSource // for a deposit: what the document will be
	Scope  ListScope          // for a listing
	// Reuse is set when a fetch is left to the reuse policy and consent:
	// the caller is an agency that neither issued nor owns the document.
	Reuse bool
	// Field names the request's field a refusal is about, when one is.
	Field string
}

// Err returns the refusal as a *kho.Error, or nil when allowed.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	e := kho.Refusal(d.Code, d.Reason, "%s", d.Message)
	if d.Field != "" {
		e.Fields = []kho.FieldError{{Pointer: "/" + d.Field, Detail: d.Message}}
	}
	return e
}

// Stable reasons of refusals.
const (
	ReasonNotFound       = "not_found"
	ReasonWrongRole      = "wrong_role"
	ReasonUnregistered   = "agency_not_registered"
	ReasonNotIssuer      = "not_issuer"
	ReasonOtherDossier   = "dossier_of_another_agency"
	ReasonWrongStoreKind = "wrong_store_kind"
	ReasonUnknownType    = "unknown_type"
	ReasonNotHandler     = "not_handler"
	ReasonErased         = "store_erased"
	ReasonNotYours       = "not_yours_to_change"
	ReasonAuthorisedOnly = "delegation_too_narrow"
	ReasonGuardianNeeded = "guardian_required"
	ReasonScope          = "outside_token_scope"
)

func allow() Decision { return Decision{Allowed: true} }

func refuse(code, reason, msg string) Decision {
	return Decision{Code: code, Reason: reason, Message: msg}
}

// notFound is the answer about anything the caller may not know exists: the
// same for "someone else's" as for "no such thing".
func notFound(what string) Decision { return refuse(kho.ENOTFOUND, ReasonNotFound, what+" not found") }

// NotFound is the refusal about something the caller may not know exists:
// the same for "someone else's" as for "no such thing".
func NotFound(what string) error { return notFound(what).Err() }

func wrongRole(msg string) Decision { return refuse(kho.EFORBIDDEN, ReasonWrongRole, msg) }

func isAgency(p kho.Principal) bool {
	return p.Kind == kho.PrincipalAgency || p.Kind == kho.PrincipalAgencyOfficer
}

// registered reports whether p acts for an agency kho has registered.
func registered(p kho.Principal, r Resource) bool {
	return isAgency(p) && r.Agency != nil && r.Agency.Code == p.Agency
}

// ownerSide reports whether the caller acts for the store's owner. A citizen
// is the owner's side of their own store even before it exists (it is
// created on first use); a delegation exists only for an existing store.
func ownerSide(r Resource) bool { return r.Store != nil && r.Store.Capacity.OwnerSide() }

// issuedBy reports whether d was issued by the agency p acts for.
func issuedBy(p kho.Principal, d *kho.Document) bool {
	return isAgency(p) && d.Source == kho.SourceAgencyIssued && d.Issuer == p.Agency
}

// Authorize decides whether p may do a on the resource r describes. It is a
// pure function of its arguments: callers load the facts, nothing here reads
// a token claim beyond the principal's own identifiers.
//
// The order is always the same: refusals that depend only on the caller's
// role come first (403, whatever the resource), then those about a resource
// the caller has no relation with (404, the same for "someone else's" as for
// "does not exist"), then the rules of the action.
// ScopeOf is the access-token scope an action needs ("" when no scope
// grants it: agencies' systems do not do it).
func ScopeOf(a Action) string {
	switch a {
	case DepositDocument, ChangeDocument, AnswerDeposit:
		return "documents:deposit"
	case ResolveStore, ListStore, ReadDocument:
		return "documents:read"
	case FetchDocument, CheckAvailability, ReadUseReceipt, AcknowledgeDeletion:
		return "documents:fetch"
	case RequestConsent, ReadConsent:
		return "consent:request"
	}
	return ""
}

func scopeHint(need string) string {
	if need == "" {
		return ""
	}
	return " (it needs " + need + ")"
}

func Authorize(p kho.Principal, a Action, r Resource) Decision {
	if p.Scoped {
		if need := ScopeOf(a); need == "" || !p.HasScope(need) {
			return refuse(kho.EFORBIDDEN, ReasonScope, "the access token's scope does not allow "+string(a)+scopeHint(need))
		}
	}
	switch a {
	case ResolveStore, ListStore:
		switch {
		case isAgency(p) && !registered(p, r):
			return refuse(kho.EFORBIDDEN, ReasonUnregistered, "agency "+string(p.Agency)+" is not registered in kho")
		case isAgency(p):
			// Whether or not the store exists, an agency resolves it (it
			// is created) and sees what it issued there: for a store it
			// never wrote to, nothing.
			return Decision{Allowed: true, Scope: ListScope{Issuer: p.Agency}}
		case p.Kind != kho.PrincipalCitizen && p.Kind != kho.PrincipalBusinessRep:
			return wrongRole("only citizens, business representatives and agencies have stores to look at")
		case ownerSide(r):
			return Decision{Allowed: true, Scope: ListScope{All: true}}
		}
		return notFound("store")

	case ReadAccessLog, ListHolds:
		if p.Kind != kho.PrincipalCitizen && p.Kind != kho.PrincipalBusinessRep {
			return wrongRole("only citizens and business representatives read the records of their stores")
		}
		if ownerSide(r) {
			return allow()
		}
		return notFound("store")

	case EraseStore:
		switch p.Kind {
		case kho.PrincipalOperator:
			if r.Store == nil || !r.Store.Exists {
				return notFound("store")
			}
			return allow()
		case kho.PrincipalCitizen, kho.PrincipalBusinessRep:
		default:
			return wrongRole("only the store's owner or an operator may erase a store")
		}
		if !ownerSide(r) {
			return notFound("store")
		}
		if r.Store.Capacity == kho.CapacityAuthorised {
			return refuse(kho.EFORBIDDEN, ReasonAuthorisedOnly, "an authorised person may not erase the business's store; its legal representative may")
		}
		if r.Store.Ward && r.Store.Capacity == kho.CapacitySelf {
			return refuse(kho.EFORBIDDEN, ReasonGuardianNeeded, "a minor's store is erased by their guardian")
		}
		return allow()

	case PlaceHold:
		if !isAgency(p) {
			return wrongRole("only an agency may place a legal hold")
		}
		if !registered(p, r) {
			return refuse(kho.EFORBIDDEN, ReasonUnregistered, "agency "+string(p.Agency)+" is not registered in kho")
		}
		if r.Store == nil || !r.Store.Exists {
			return notFound("store")
		}
		if r.Store.Erased {
			return refuse(kho.ECONFLICT, ReasonErased, "the store was erased; there is nothing left to hold")
		}
		return allow()

	case ReleaseHold:
		switch {
		case p.Kind == kho.PrincipalOperator:
			return allow()
		case !isAgency(p):
			return wrongRole("only the agency that placed a legal hold, or an operator, may release it")
		case r.Holder == "" || r.Holder != p.Agency:
			return notFound("legal hold")
		}
		return allow()

	case CheckAvailability, RequestConsent:
		if !isAgency(p) {
			return wrongRole("only an agency checks availability or requests consent")
		}
		if !registered(p, r) {
			return refuse(kho.EFORBIDDEN, ReasonUnregistered, "agency "+string(p.Agency)+" is not registered in kho")
		}
		if r.Procedure == nil {
			d := refuse(kho.EINVALID, "unknown_procedure", "the procedure is not in the catalogue")
			d.Field = "procedure"
			return d
		}
		if !slices.Contains(r.Procedure.HandlerKinds, r.Agency.Kind) {
			return refuse(kho.EFORBIDDEN, ReasonNotHandler, "agency "+string(p.Agency)+" does not handle procedure "+r.Procedure.Code)
		}
		return allow()

	case DepositDocument:
		return authorizeDeposit(p, r)

	case ReadDocument, AnswerDeposit:
		// A deposit's retry is answered with what the deposit made, as it
		// is now, under the scope that made it.
		if r.Document == nil {
			return notFound("document")
		}
		if ownerSide(r) || issuedBy(p, r.Document) {
			return allow()
		}
		return notFound("document")

	case ChangeDocument:
		if r.Document == nil {
			return notFound("document")
		}
		d := r.Document
		if issuedBy(p, d) || (d.Source == kho.SourceSelfDeclared && ownerSide(r)) {
			return allow()
		}
		if ownerSide(r) {
			return refuse(kho.EFORBIDDEN, ReasonNotYours, "only the issuer of a document may supersede or revoke it")
		}
		return notFound("document")

	case FetchDocument:
		if r.Document == nil {
			return notFound("document")
		}
		if ownerSide(r) || issuedBy(p, r.Document) {
			return allow()
		}
		if registered(p, r) {
			return Decision{Allowed: true, Reuse: true}
		}
		return notFound("document")

	case DecideConsent:
		if p.Kind != kho.PrincipalCitizen && p.Kind != kho.PrincipalBusinessRep {
			// The grantee included: a consent is the subject's to give.
			return wrongRole("only the subject, their guardian or a business's representative decides about consents")
		}
		if ownerSide(r) {
			return allow()
		}
		if r.Grantee != "" {
			return notFound("consent")
		}
		return notFound("store")

	case ReadConsent:
		if ownerSide(r) || (isAgency(p) && r.Grantee != "" && r.Grantee == p.Agency) {
			return allow()
		}
		return notFound("consent")

	case AcknowledgeDeletion:
		if !isAgency(p) {
			return wrongRole("only the agency that fetched a document acknowledges deleting it")
		}
		if r.Grantee == p.Agency && r.Store != nil {
			return allow()
		}
		return notFound("use receipt")

	case ReadUseReceipt:
		// The agency that fetched (Grantee) keeps it as proof; the
		// store's owner side sees what was used.
		if isAgency(p) && r.Grantee == p.Agency {
			return allow()
		}
		if ownerSide(r) {
			return allow()
		}
		return notFound("use receipt")

	case SearchAudit:
		if p.Kind == kho.PrincipalSecurityOfficer {
			return allow()
		}
		return wrongRole("only a security officer may search the audit trail")
	}
	return refuse(kho.EFORBIDDEN, ReasonWrongRole, "no rule admits this action")
}

// authorizeDeposit: an agency deposits, as the issuer, only the types its
// kind issues, under dossier codes of its own; the owner's side deposits
// self-declared documents. Types must suit the store (citizen or business).
func authorizeDeposit(p kho.Principal, r Resource) Decision {
	var d Decision
	switch {
	case isAgency(p):
		if !registered(p, r) {
			return refuse(kho.EFORBIDDEN, ReasonUnregistered, "agency "+string(p.Agency)+" is not registered in kho")
		}
		if r.DocType == nil {
			return unknownType()
		}
		if !slices.Contains(r.DocType.IssuerKinds, r.Agency.Kind) {
			return refuse(kho.EFORBIDDEN, ReasonNotIssuer, "agency "+string(p.Agency)+" ("+r.Agency.Kind+") does not issue "+r.DocType.Code+" ("+r.DocType.NameEN+")")
		}
		if r.Deposit != nil && r.Deposit.DossierCode != "" && r.Deposit.DossierCode.Unit() != string(p.Agency) {
			return refuse(kho.EFORBIDDEN, ReasonOtherDossier, "the dossier code belongs to another agency's unit")
		}
		d = Decision{Allowed: true, Source: kho.SourceAgencyIssued}
	case p.Kind == kho.PrincipalCitizen || p.Kind == kho.PrincipalBusinessRep:
		// The store may not exist yet: a first upload creates it.
		if !ownerSide(r) {
			return notFound("store")
		}
		if r.DocType == nil {
			return unknownType()
		}
		d = Decision{Allowed: true, Source: kho.SourceSelfDeclared}
	default:
		return wrongRole("only an agency or the store's owner may deposit a document")
	}
	if r.Store == nil {
		return notFound("store")
	}
	if r.Store.Erased {
		return refuse(kho.ECONFLICT, ReasonErased, "this store was erased and takes no new documents")
	}
	if !slices.Contains(r.DocType.StoreKinds(), string(r.Store.Kind)) {
		d := refuse(kho.EINVALID, ReasonWrongStoreKind, "document type "+r.DocType.Code+" does not belong in a "+string(r.Store.Kind)+"'s store")
		d.Field = "type"
		return d
	}
	return d
}

func unknownType() Decision {
	d := refuse(kho.EINVALID, ReasonUnknownType, "the document type is not in the catalogue")
	d.Field = "type"
	return d
}
