package kho

import "context"

// SubjectKeys holds one key per subject, in Vault Transit, that wraps the
// subjects' file keys. Keys never leave it; deleting a subject's key makes
// every file key wrapped by it, and so every copy of the subject's
// ciphertext, unreadable. The vault package's Transit meets it.
type SubjectKeys interface {
	// EnsureKey creates the subject's key when missing. Errors: EUNAVAILABLE.
	EnsureKey(ctx context.Context, h SubjectHandle) error

	// Wrap encrypts a file key under the subject's latest key version,
	// bound to ad: unwrapping needs the same ad. It returns the wrapped key
	// and the key version used. Errors: ENOTFOUND (no key), EUNAVAILABLE.
	Wrap(ctx context.Context, h SubjectHandle, fileKey, ad []byte) (wrapped string, version int, err error)

	// Unwrap reverses Wrap. Errors: EINTEGRITY (wrong ad, corrupt or
	// retired wrap), ENOTFOUND (key erased), EUNAVAILABLE.
	Unwrap(ctx context.Context, h SubjectHandle, wrapped string, ad []byte) ([]byte, error)

	// Rewrap re-encrypts wrapped keys under the latest key version without
	// revealing them, in one call. Errors: EINTEGRITY, ENOTFOUND,
	// EUNAVAILABLE.
	Rewrap(ctx context.Context, h SubjectHandle, items []RewrapItem) ([]RewrapItem, error)

	// Rotate adds a new key version; later wraps use it.
	Rotate(ctx context.Context, h SubjectHandle) error

	// Versions reports the latest version and the oldest one still allowed
	// to unwrap.
	Versions(ctx context.Context, h SubjectHandle) (latest, minDecryption int, err error)

	// RetireBefore forbids unwrapping with versions older than v.
	RetireBefore(ctx context.Context, h SubjectHandle, v int) error

	// Delete destroys the subject's key (crypto-shredding). Deleting a
	// missing key is not an error.
	Delete(ctx context.Context, h SubjectHandle) error
}

// RewrapItem is one wrapped key with the ad it is bound to.
type RewrapItem struct {
	Wrapped string
	AD      []byte
	Version int // set on return
}

// ManifestSigner signs and verifies document manifests with keys that never
// leave Vault. The vault package's Transit meets it.
type ManifestSigner interface {
	// SignDetached returns a compact JWS with a detached payload over
	// payload, made with the named signing key (created when missing).
	// Errors: EUNAVAILABLE.
	SignDetached(ctx context.Context, key string, payload []byte) (string, error)

	// VerifyDetached checks jws against payload and returns the key name
	// and version that signed it. Errors: EINTEGRITY, EUNAVAILABLE.
	VerifyDetached(ctx context.Context, jws string, payload []byte) (key string, version int, err error)
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the id of the request being served, so
// audit events and logs deep in the call can name it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the id WithRequestID put in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// FetchRequest is an agency asking to read a document of someone else's
// store for a procedure it handles.
type FetchRequest struct {
	Principal Principal
	Document  *Document
	Procedure string
	// Nonce, when the agency's system sent one, is written into the use
	// receipt, binding it to this one request.
	Nonce string
}

type fetchNonceKey struct{}

// WithFetchNonce carries an agency system's request nonce to the fetch.
func WithFetchNonce(ctx context.Context, nonce string) context.Context {
	return context.WithValue(ctx, fetchNonceKey{}, nonce)
}

// FetchNonce returns the nonce WithFetchNonce carried, or "".
func FetchNonce(ctx context.Context) string {
	n, _ := ctx.Value(fetchNonceKey{}).(string)
	return n
}

// FetchGrant says on what ground a fetch was admitted.
type FetchGrant struct {
	ConsentID  string
	LegalBasis string
	// UseReceipt is the signed use receipt (a compact JWS) of this fetch,
	// and UseReceiptID its id.
	UseReceipt   string
	UseReceiptID string
}

// ReuseDecider decides fetches under the reuse policy, consent and legal
// bases. The consent package meets it.
//
// A fetch is decided twice: PrecheckFetch before anything is read from the
// object store or unwrapped in Vault (a refusal is recorded and ends the
// fetch), then AuthorizeFetch once the object is open, which decides again
// under lock, records the admission (with the consent or legal basis) and
// counts the consent's use atomically, before returning; the caller sends
// bytes only after it.
type ReuseDecider interface {
	// PrecheckFetch errors: EFORBIDDEN or ENOTFOUND with a stable Reason
	// (recorded), EUNAVAILABLE.
	PrecheckFetch(ctx context.Context, req FetchRequest) error
	// AuthorizeFetch errors: EFORBIDDEN or ENOTFOUND with a stable Reason,
	// EUNAVAILABLE.
	AuthorizeFetch(ctx context.Context, req FetchRequest) (FetchGrant, error)
}

// PDFSigner puts the issuing agency's signature inside a PDF (PAdES), and,
// when officer is set, the depositing officer's personal signature after it;
// the signing package meets it. Deposits of agency-issued PDFs go through
// it, so what is stored is the signed PDF.
type PDFSigner interface {
	SignPDF(ctx context.Context, issuer AgencyCode, officer StaffID, pdf []byte, resultCode string) ([]byte, error)
}

// SelfDeclaredKey is the Transit key kho signs the manifests of
// self-declared documents with ("issuer": "self-declared" in the manifest).
const SelfDeclaredKey = "kho-self-declared"

// AgencySigningKey is the Transit key an agency signs its manifests and PDF
// signatures with; its public keys are published at
// /issuers/{code}/jwks.json.
func AgencySigningKey(a AgencyCode) string { return "agency-" + string(a) }
