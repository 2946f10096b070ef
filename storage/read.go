package storage

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/policies"
	"kho/postgres"
)

// ListFilter narrows a listing.
type ListFilter struct {
	Type   string
	Status kho.DocumentStatus
	Issuer kho.AgencyCode
	Cursor kho.DocumentID // the last id of the previous page
	Limit  int            // 1 to 200 (default 50)
}

// Page is one page of a listing, newest first.
type Page struct {
	Documents  []*kho.Document `json:"documents"`
	NextCursor kho.DocumentID  `json:"next_cursor,omitempty"`
}

// List returns a store's documents: all of them to the owner's side (the
// owner, a guardian, a business's representatives), those it issued to a
// registered agency. An agency listing a store that does not exist gets the
// same empty page as for a store it never wrote to.
func (s *Service) List(ctx context.Context, p kho.Principal, h kho.SubjectHandle, f ListFilter) (*Page, error) {
	r, err := s.storeAndAgency(ctx, p, h)
	if err != nil {
		return nil, err
	}
	dec, err := s.decide(ctx, p, audit.DocumentsListed, policies.ListStore, r)
	if err != nil {
		return nil, err
	}
	return s.list(ctx, p, r.Store, dec.Scope, f)
}

// ListFor lists the store of subject id (the caller's own when empty): a
// guardian names the ward, and is refused unless the guardianship is current.
func (s *Service) ListFor(ctx context.Context, p kho.Principal, id kho.SubjectID, f ListFilter) (*Page, error) {
	st, err := s.StoreFor(ctx, p, policies.ListStore, id)
	if err != nil {
		return nil, err
	}
	return s.list(ctx, p, st, policies.ListScope{All: true}, f)
}

func (s *Service) list(ctx context.Context, p kho.Principal, st *policies.Store, scope policies.ListScope, f ListFilter) (*Page, error) {
	if f.Limit == 0 {
		f.Limit = 50
	}
	if f.Limit < 1 || f.Limit > 200 {
		return nil, kho.Errorf(kho.EINVALID, "limit must be between 1 and 200")
	}
	page := &Page{Documents: []*kho.Document{}}
	ev := audit.Event{Action: audit.DocumentsListed, Outcome: audit.Success, Actor: p}
	if st == nil || !st.Exists {
		ev.Details = map[string]any{"count": 0}
		return page, audit.RecordNow(ctx, s.db, ev)
	}
	ev.Subject, ev.ActingFor = st.Handle, st.ActingFor()
	where := []string{"d.subject_handle = $1"}
	args := []any{st.Handle}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+itoa(len(args))))
	}
	if !scope.All {
		add("d.issuer = ?", string(scope.Issuer))
	}
	if f.Type != "" {
		add("d.type_code = ?", f.Type)
	}
	if f.Issuer != "" {
		add("d.issuer = ?", string(f.Issuer))
	}
	switch f.Status {
	case "":
	case kho.StatusExpired:
		where = append(where, "d.status = 'valid' AND d.valid_until < current_date")
	case kho.StatusValid:
		where = append(where, "d.status = 'valid' AND (d.valid_until IS NULL OR d.valid_until >= current_date)")
	case kho.StatusSuperseded, kho.StatusRevoked, kho.StatusErased:
		add("d.status = ?", string(f.Status))
	default:
		return nil, kho.Errorf(kho.EINVALID, "status must be valid, expired, superseded, revoked or erased")
	}
	if f.Cursor != "" {
		if err := f.Cursor.Validate(); err != nil {
			return nil, kho.Errorf(kho.EINVALID, "cursor is not one this service returned")
		}
		add("d.id < ?", string(f.Cursor))
	}
	args = append(args, f.Limit+1)
	rows, err := s.db.Pool.Query(ctx, `SELECT `+documentColumns+` FROM documents d
		WHERE `+strings.Join(where, " AND ")+` ORDER BY d.id DESC LIMIT $`+itoa(len(args)), args...)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: list documents", err)
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDocument(rows, nil)
		if err != nil {
			return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: list documents", err)
		}
		d.Status = d.EffectiveStatus(s.now())
		page.Documents = append(page.Documents, &d.Document)
	}
	if err := rows.Err(); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: list documents", err)
	}
	if len(page.Documents) > f.Limit {
		page.Documents = page.Documents[:f.Limit]
		page.NextCursor = page.Documents[f.Limit-1].ID
	}
	ev.Details = map[string]any{"count": len(page.Documents)}
	if err := audit.RecordNow(ctx, s.db, ev); err != nil {
		return nil, err
	}
	return page, nil
}

func itoa(n int) string { return strconv.Itoa(n) }

// ByteRange is an inclusive range of plaintext bytes, as in HTTP. Last < 0
// means "to the end"; Suffix > 0 asks for the last Suffix bytes instead of
// First and Last. Open resolves it against the document's size, which the
// caller need not know.
type ByteRange struct {
	First, Last int64
	Suffix      int64
}

// RangeError is a range that does not overlap the document; Size lets HTTP
// answer 416 with the document's length.
type RangeError struct{ Size int64 }

func (e *RangeError) Error() string {
	return fmt.Sprintf("range outside a document of %d bytes", e.Size)
}

// resolve turns r into an explicit range within a document of size bytes.
func (r ByteRange) resolve(size int64) (*ByteRange, error) {
	if r.Suffix > 0 {
		r.First, r.Last = max(size-r.Suffix, 0), size-1
	}
	if r.Last < 0 || r.Last >= size {
		r.Last = size - 1
	}
	if r.First < 0 || r.First >= size || r.Last < r.First {
		return nil, &kho.Error{Code: kho.EINVALID, Reason: "range_not_satisfiable",
			Message: fmt.Sprintf("the range is outside the document (size %d)", size), Err: &RangeError{Size: size}}
	}
	return &r, nil
}

// Content is an opened document: its metadata and its plaintext stream.
type Content struct {
	Document *kho.Document
	Body     io.ReadCloser
	Range    *ByteRange // the range served, when one was asked for
	// UseReceipt (a compact JWS) and its id, for a fetch another agency
	// made under consent or a legal basis.
	UseReceipt, UseReceiptID string
	// ManifestJWS is the issuer's signature over the document's manifest,
	// as a compact JWS with the manifest as its payload: anyone with the
	// issuer's published keys (GET /issuers/{code}/jwks.json) checks it
	// without trusting kho.
	ManifestJWS string
}

// Open lets a reader who may read the document have its plaintext. Before it
// returns, it has checked the issuer's signature over the manifest, found the
// object bound to this document and subject, unwrapped its file key, and
// recorded exactly one read in the audit trail. A full read is hashed as it
// streams; at its end a size or hash mismatch is an error, never a clean EOF.
// age authenticates every 64 KiB chunk before releasing it, so a tampered
// object yields an error, never altered bytes.
//
// Errors: ENOTFOUND (no such document, or not visible to p), EINVALID (bad
// range), EINTEGRITY (tampered, swapped or unreadable), EUNAVAILABLE.
func (s *Service) Open(ctx context.Context, p kho.Principal, id kho.DocumentID, rng *ByteRange) (*Content, error) {
	d, _, err := s.loadFor(ctx, p, audit.DocumentRead, policies.ReadDocument, id)
	if err != nil {
		return nil, err
	}
	return s.openReadable(ctx, p, d, rng)
}

// openReadable reads a document its owner's side or its issuer may read,
// recording the read.
func (s *Service) openReadable(ctx context.Context, p kho.Principal, d *docRow, rng *ByteRange) (*Content, error) {
	if err := s.checkReadable(ctx, p, d); err != nil {
		return nil, err
	}
	return s.open(ctx, p, d, rng, func(rng *ByteRange) error {
		details := map[string]any{}
		if rng != nil {
			details["range"] = [2]int64{rng.First, rng.Last}
		}
		return audit.RecordNow(ctx, s.db, audit.Event{Action: audit.DocumentRead, Outcome: audit.Success, Actor: p, Subject: d.Subject, Document: d.ID,
			ActingFor: d.store.ActingFor(), Details: details})
	})
}

// Fetch lets an agency read a document of someone else's store for a
// procedure it handles. The owner's side and the issuer read as with Open.
//
// For any other agency, everything is decided before any object is read or
// any key unwrapped: the procedure must be in the catalogue (checked before
// the document is even looked up, so the answer does not depend on whether
// it exists), Authorize must leave the fetch to the reuse policy, and the
// reuse decider's precheck (policy, consent or legal basis, validity) must
// admit it; a refusal is recorded against the subject's store, with the
// agency and procedure, and costs no Vault or MinIO call. Only then is the
// object opened and its key unwrapped, and the decider rules once more under
// lock, recording the read and counting the consent's use, before the first
// byte: a use is never spent on a document that fails its integrity checks.
func (s *Service) Fetch(ctx context.Context, p kho.Principal, id kho.DocumentID, procedure string, rng *ByteRange) (*Content, error) {
	ctx = postgres.WithMemo(ctx)
	proc, err := postgres.Procedure(ctx, s.db.Pool, procedure)
	if err != nil {
		return nil, err
	}
	if proc == nil {
		return nil, kho.Refusal(kho.EINVALID, "unknown_procedure", "procedure %q is not in the catalogue", kho.Truncate(procedure, 40))
	}
	d, dec, err := s.loadFor(ctx, p, audit.DocumentRead, policies.FetchDocument, id)
	if err != nil {
		return nil, err
	}
	if !dec.Reuse {
		return s.openReadable(ctx, p, d, rng)
	}
	if s.reuse == nil {
		return nil, policies.NotFound("document")
	}
	req := kho.FetchRequest{Principal: p, Document: &d.Document, Procedure: proc.Code, Nonce: kho.FetchNonce(ctx)}
	if err := s.reuse.PrecheckFetch(ctx, req); err != nil {
		return nil, err
	}
	if limit, ok := ctx.Value(maxFetchKey{}).(int64); ok && d.Size > limit {
		// Told only to an agency the fetch would be admitted for, and
		// before it is decided: no consent is used for a delivery that
		// cannot be made.
		return nil, kho.Refusal(kho.EINVALID, "too_large_for_delivery", "documents over %d MiB are not delivered as one JWE: ask for the segmented form (Accept: application/vnd.kho.jwe-stream), which the Go client reads", limit>>20)
	}
	if err := s.checkReadable(ctx, p, d); err != nil {
		return nil, err
	}
	var grant kho.FetchGrant
	content, err := s.open(ctx, p, d, rng, func(*ByteRange) error {
		var err error
		grant, err = s.reuse.AuthorizeFetch(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	content.UseReceipt, content.UseReceiptID = grant.UseReceipt, grant.UseReceiptID
	return content, nil
}

type maxFetchKey struct{}

// WithMaxFetchSize bounds the size of a document Fetch will deliver under
// the reuse policy (an encrypted delivery is made in memory): a larger one
// is refused before the fetch is decided, so no consent is used.
func WithMaxFetchSize(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, maxFetchKey{}, n)
}

// open decrypts a readable document's object and calls admit with the
// resolved range; admit must record the read (and may refuse it) before the
// plaintext is handed out.
func (s *Service) open(ctx context.Context, p kho.Principal, d *docRow, rng *ByteRange, admit func(*ByteRange) error) (*Content, error) {
	if rng != nil {
		var err error
		if rng, err = rng.resolve(d.Size); err != nil {
			return nil, err
		}
	}
	ident := s.identity(ctx, d)
	var body io.ReadCloser
	if rng == nil {
		obj, err := s.blobs.Get(ctx, *d.object)
		if err != nil {
			return nil, s.integrityFailure(ctx, p, d, err)
		}
		plain, err := decrypt(obj, ident)
		if err != nil {
			obj.Close()
			return nil, s.integrityFailure(ctx, p, d, ageError(err))
		}
		body = &verifyingReader{r: plain, c: closers{plain, obj}, h: sha256.New(), want: d.rawSHA, size: d.Size, onFail: func(err error) {
			_ = s.integrityFailure(context.WithoutCancel(ctx), p, d, err)
		}}
	} else {
		obj, size, err := s.ranges.OpenAt(ctx, *d.object)
		if err != nil {
			return nil, s.integrityFailure(ctx, p, d, err)
		}
		plain, plainSize, err := age.DecryptReaderAt(obj, size, ident)
		if err != nil {
			obj.Close()
			return nil, s.integrityFailure(ctx, p, d, ageError(err))
		}
		if plainSize != d.Size {
			obj.Close()
			return nil, s.integrityFailure(ctx, p, d, kho.Errorf(kho.EINTEGRITY, "the stored object has the wrong size"))
		}
		body = &rangeReader{r: io.NewSectionReader(plain, rng.First, rng.Last-rng.First+1), c: obj}
	}
	if err := admit(rng); err != nil {
		body.Close()
		return nil, err
	}
	return &Content{Document: &d.Document, Body: body, Range: rng, ManifestJWS: attach(d.signature, manifestOf(&d.Document).Bytes())}, nil
}

// attach puts the payload back into a detached compact JWS.
func attach(detached string, payload []byte) string {
	head, sig, ok := strings.Cut(detached, "..")
	if !ok {
		return ""
	}
	return head + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + sig
}

// checkReadable refuses a document whose content was erased or whose
// manifest is not signed by the key of the one who vouches for it.
func (s *Service) checkReadable(ctx context.Context, p kho.Principal, d *docRow) error {
	if d.object == nil || d.wrapped == nil {
		return kho.Errorf(kho.ENOTFOUND, "the document's content was erased")
	}
	if _, _, err := s.verifyManifest(ctx, d); err != nil {
		return s.integrityFailure(ctx, p, d, err)
	}
	return nil
}

// verifyManifest checks the manifest's signature, and that it was made with
// the key of the document's issuer (or kho's key for self-declared ones):
// a valid signature by any other key on the signing mount is no evidence.
func (s *Service) verifyManifest(ctx context.Context, d *docRow) (string, int, error) {
	key, v, err := s.signer.VerifyDetached(ctx, d.signature, manifestOf(&d.Document).Bytes())
	if err != nil {
		return "", 0, err
	}
	if want := signingKeyName(&d.Document); key != want {
		return key, v, kho.Errorf(kho.EINTEGRITY, "the manifest is signed with key %s, not the issuer's key %s", key, want)
	}
	return key, v, nil
}

func (s *Service) identity(ctx context.Context, d *docRow) *transitIdentity {
	return &transitIdentity{ctx: ctx, keys: s.keys, subject: d.Subject, doc: d.ID, wrapped: *d.wrapped}
}

// integrityFailure records a failed read of stored data and returns err, as
// an integrity failure unless it is a plain outage.
func (s *Service) integrityFailure(ctx context.Context, p kho.Principal, d *docRow, err error) error {
	code := kho.ErrorCode(err)
	if code == kho.ENOTFOUND || code == kho.EINTEGRITY {
		// What changed since the row was read is not tampering: the store
		// erased (key and object gone), the document erased, or its file
		// key rewrapped by a rotation that retired the version read.
		var gone bool
		var wrapped *string
		qerr := s.db.Pool.QueryRow(context.WithoutCancel(ctx), `SELECT s.erased_at IS NOT NULL OR d.status = 'erased', d.wrapped_key
			FROM documents d JOIN subjects s ON s.handle = d.subject_handle WHERE d.id = $1`, d.ID).Scan(&gone, &wrapped)
		switch {
		case qerr != nil && !errors.Is(qerr, pgx.ErrNoRows):
			return kho.WrapError(kho.EUNAVAILABLE, "storage: re-read the document", qerr)
		case qerr != nil || (gone && (d.store == nil || !d.store.Erased)):
			// Erased since the row was read (a store erased before it was
			// read, yet with a readable row, is a restored backup: that
			// stays an integrity failure).
			return kho.Errorf(kho.ENOTFOUND, "the document was erased while it was being read")
		case d.wrapped != nil && (wrapped == nil || *wrapped != *d.wrapped):
			return kho.Errorf(kho.EUNAVAILABLE, "the document's key was rotated while it was being read; try again")
		}
	}
	switch code {
	case kho.ENOTFOUND:
		// A row with no object, or a subject key that is gone: the stored
		// state is broken, not the request.
		err = kho.WrapError(kho.EINTEGRITY, "the document's stored content is missing or unreadable", err)
	case kho.EINTEGRITY:
	default:
		// An outage, or a failure nothing proves is in the stored bytes
		// or keys: never raised as tampering.
		if code != kho.EUNAVAILABLE {
			s.log.ErrorContext(ctx, "reading a document failed", "document_id", d.ID, "request_id", kho.RequestID(ctx), "err", err.Error())
		}
		return err
	}
	s.log.ErrorContext(ctx, "document failed an integrity check", "document_id", d.ID, "request_id", kho.RequestID(ctx), "err", err.Error())
	if aerr := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.DocumentIntegrity, Outcome: audit.Failure, Actor: p, Subject: d.Subject, Document: d.ID,
		Details: map[string]any{"reason": kho.ErrorMessage(err)}}); aerr != nil {
		s.log.ErrorContext(ctx, "could not record an integrity failure", "document_id", d.ID, "err", aerr.Error())
	}
	return err
}

// verifyingReader hashes a full read and turns the end of the stream into an
// error when size or hash differ from the document's.
type verifyingReader struct {
	r      io.Reader
	c      io.Closer
	h      hash.Hash
	n      int64
	want   []byte
	size   int64
	onFail func(error)
	once   sync.Once
	err    error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case err == io.EOF:
		if v.n != v.size || !equal(v.h.Sum(nil), v.want) {
			err = kho.Errorf(kho.EINTEGRITY, "the document's content does not match its recorded hash")
		}
	case err != nil:
		err = ageError(err)
	case v.n > v.size:
		err = kho.Errorf(kho.EINTEGRITY, "the document's content is longer than recorded")
	}
	if err != nil && err != io.EOF {
		v.err = err
		v.once.Do(func() { v.onFail(err) })
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.c.Close() }

// closers closes each in turn.
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

type rangeReader struct {
	r *io.SectionReader
	c io.Closer
}

func (r *rangeReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = ageError(err)
	}
	return n, err
}

func (r *rangeReader) Close() error { return r.c.Close() }

func equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Report is the result of verifying a stored document end to end.
type Report struct {
	DocumentID kho.DocumentID `json:"document_id"`
	Valid      bool           `json:"valid"`
	Signature  struct {
		Valid       bool   `json:"valid"`
		SigningKey  string `json:"signing_key,omitempty"` // the key that made the signature
		ExpectedKey string `json:"expected_key"`          // the issuer's own key, which must have made it
		KeyVersion  int    `json:"key_version,omitempty"`
		Issuer      string `json:"issuer"`
		Error       string `json:"error,omitempty"`
	} `json:"signature"`
	Content struct {
		Valid  bool   `json:"valid"`
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
		Error  string `json:"error,omitempty"`
	} `json:"content"`
	Manifest Manifest `json:"manifest"`
}

// Verify checks a document end to end for a reader who may read it: the
// issuer's signature over the manifest, and the stored ciphertext decrypted
// in full against the recorded size and hash. No content leaves; the check is
// recorded.
func (s *Service) Verify(ctx context.Context, p kho.Principal, id kho.DocumentID) (*Report, error) {
	d, _, err := s.loadFor(ctx, p, audit.DocumentVerified, policies.ReadDocument, id)
	if err != nil {
		return nil, err
	}
	r := &Report{DocumentID: d.ID, Manifest: manifestOf(&d.Document)}
	r.Signature.Issuer = r.Manifest.Issuer
	r.Signature.ExpectedKey = signingKeyName(&d.Document)
	key, v, err := s.verifyManifest(ctx, d)
	r.Signature.SigningKey, r.Signature.KeyVersion = key, v
	if err != nil {
		if kho.ErrorCode(err) == kho.EUNAVAILABLE {
			return nil, err
		}
		r.Signature.Error = kho.ErrorMessage(err)
	} else {
		r.Signature.Valid = true
	}
	if d.object == nil || d.wrapped == nil {
		r.Content.Error = "the document's content was erased"
	} else if err := s.hashStored(ctx, d, r); err != nil {
		if kho.ErrorCode(err) == kho.EUNAVAILABLE {
			return nil, err
		}
		r.Content.Error = kho.ErrorMessage(err)
	}
	r.Valid = r.Signature.Valid && r.Content.Valid
	outcome := audit.Success
	if !r.Valid {
		outcome = audit.Failure
	}
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.DocumentVerified, Outcome: outcome, Actor: p, Subject: d.Subject, Document: d.ID,
		ActingFor: d.store.ActingFor(), Details: map[string]any{"valid": r.Valid}}); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *Service) hashStored(ctx context.Context, d *docRow, r *Report) error {
	obj, err := s.blobs.Get(ctx, *d.object)
	if err != nil {
		if kho.ErrorCode(err) == kho.ENOTFOUND {
			return kho.Errorf(kho.EINTEGRITY, "the document's object is missing")
		}
		return err
	}
	defer obj.Close()
	plain, err := age.Decrypt(obj, s.identity(ctx, d))
	if err != nil {
		return ageError(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, plain)
	if err != nil {
		return ageError(err)
	}
	r.Content.SHA256, r.Content.Size = hex.EncodeToString(h.Sum(nil)), n
	if n != d.Size || !equal(h.Sum(nil), d.rawSHA) {
		return kho.Errorf(kho.EINTEGRITY, "the document's content does not match its recorded hash")
	}
	r.Content.Valid = true
	return nil
}
