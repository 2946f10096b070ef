package storage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"hash"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	pdfapi "github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"golang.org/x/crypto/chacha20poly1305"

	"kho"
	"kho/audit"
	"kho/breaker"
	"kho/policies"
	"kho/postgres"
)

// Manifest is what the depositing agency signs: enough to bind the signature
// to one document's bytes, owner and meaning. Field order is fixed by the
// struct, so the JSON is the same wherever it is made.
type Manifest struct {
	Version    int               `json:"v"`
	DocumentID kho.DocumentID    `json:"document_id"`
	Subject    kho.SubjectHandle `json:"subject"`
	Type       string            `json:"type"`
	SHA256     string            `json:"sha256"`
	Size       int64             `json:"size"`
	MediaType  string            `json:"media_type"`
	IssuedOn   string            `json:"issued_on"`
	Issuer     string            `json:"issuer"` // agency code, or "self-declared"
}

// Bytes returns the manifest's canonical JSON.
func (m Manifest) Bytes() []byte {
	b, _ := json.Marshal(m) // a struct of strings and ints always encodes
	return b
}

func manifestOf(d *kho.Document) Manifest {
	issuer := string(d.Issuer)
	if d.Source == kho.SourceSelfDeclared {
		issuer = "self-declared"
	}
	return Manifest{Version: 1, DocumentID: d.ID, Subject: d.Subject, Type: d.Type, SHA256: d.SHA256, Size: d.Size,
		MediaType: d.MediaType, IssuedOn: d.IssueOn.String(), Issuer: issuer}
}

// signingKeyName is the Transit key that signs a document's manifest: the
// issuing agency's own, or kho's for self-declared documents.
func signingKeyName(d *kho.Document) string {
	if d.Source == kho.SourceSelfDeclared {
		return kho.SelfDeclaredKey
	}
	return kho.AgencySigningKey(d.Issuer)
}

var pdfcpuOnce sync.Once

// checkPDF validates the PDF's structure with pdfcpu.
func checkPDF(b []byte) error {
	// Without this, pdfcpu writes a configuration file into the user's home
	// directory on first use.
	pdfcpuOnce.Do(func() { model.ConfigPath = "disable" })
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	if err := pdfapi.Validate(bytes.NewReader(b), conf); err != nil {
		return kho.WrapError(kho.EINVALID, "the file is not a well-formed PDF", err)
	}
	return nil
}

// countingHasher hashes and counts what passes through, and fails once more
// than limit bytes have passed.
type countingHasher struct {
	r     io.Reader
	h     hash.Hash
	n     int64
	limit int64
}

func (c *countingHasher) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.limit {
		return n, kho.Errorf(kho.ETOOLARGE, "the document is larger than %d bytes", c.limit)
	}
	return n, err
}

// prepared is a checked content stream ready to encrypt; release gives
// back the memory budget of a document held whole, once it is stored.
// size is the content's length when it is known (a document held whole),
// else -1: encryptToStore then reads ahead to learn it.
type prepared struct {
	src     *countingHasher
	size    int64
	release func()
}

// lookAhead is how much of a streamed document is read before it is
// stored: a document that ends within it is stored with one PUT of known
// length instead of a multipart upload of unknown length, which costs the
// object store about twice the CPU and khod a part-sized buffer.
const lookAhead = 4 << 20

// readAhead reads up to lookAhead bytes of r, taking memory budget as they
// arrive but never waiting for it: when the budget is spent, the document
// streams with its length unknown, as it would without the look-ahead.
// It returns the stream to store (what was read, then the rest), its
// length when r ended within the look-ahead (else -1), and the function
// that gives the budget back. A read error is kept for the stream to
// return where it happened.
func (s *Service) readAhead(r io.Reader) (io.Reader, int64, func()) {
	bp := lookAheadBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	taken := 0
	release := func() {
		s.budget.give(taken)
		lookAheadBuffers.Put(bp)
	}
	for len(buf) < lookAhead {
		// Budget for the next 64 KiB before reading into it.
		if len(buf) == taken*budgetUnit {
			if !s.budget.tryTake() {
				break // no budget to spare: the rest streams
			}
			taken++
		}
		n, err := r.Read(buf[len(buf) : taken*budgetUnit])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return bytes.NewReader(buf), int64(len(buf)), release
		}
		if err != nil {
			return io.MultiReader(bytes.NewReader(buf), errorReader{err}), -1, release
		}
	}
	return io.MultiReader(bytes.NewReader(buf), r), -1, release
}

// lookAheadBuffers are reused from one deposit to the next: a fresh
// buffer per deposit cost more CPU (zeroed, copied as it grew, collected)
// than encrypting the document.
var lookAheadBuffers = sync.Pool{New: func() any { b := make([]byte, lookAhead); return &b }}

type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }

// prepare checks the start of the content against the declared media type
// and, for a PDF, its whole structure (a PDF is held in memory for that, up to
// the PDF limit); other content streams through.
// sign, when set, signs a PDF before it is stored.
func (s *Service) prepare(ctx context.Context, body io.Reader, mediaType string, sign func([]byte) ([]byte, error)) (*prepared, error) {
	br := bufio.NewReaderSize(body, 4096)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, kho.WrapError(kho.EINVALID, "could not read the document", err)
	}
	if len(head) == 0 {
		return nil, kho.Errorf(kho.EINVALID, "the document is empty")
	}
	if sniffed := http.DetectContentType(head); !kho.SniffMatches(mediaType, sniffed) {
		return nil, kho.Errorf(kho.EINVALID, "the content looks like %s, not the declared %s", sniffed, mediaType)
	}
	var src io.Reader = br
	if inMemory(mediaType) {
		// Read first, against the memory budget as the bytes arrive; the
		// slot for checking is taken once the document is in, so a slow
		// sender holds no slot.
		b, done, err := s.budget.ReadAll(ctx, br, s.maxPDF, "a "+mediaType+" document")
		if err != nil {
			return nil, err
		}
		release, err := s.acquire(ctx)
		if err != nil {
			done()
			return nil, err
		}
		defer release()
		ok := false
		defer func() {
			if !ok {
				done()
			}
		}()
		if err := checkStructure(mediaType, b); err != nil {
			return nil, err
		}
		if sign != nil && mediaType == "application/pdf" {
			if b, err = sign(b); err != nil {
				return nil, err
			}
		}
		src = bytes.NewReader(b)
		ok = true
		return &prepared{src: &countingHasher{r: src, h: sha256.New(), limit: s.maxSize}, size: int64(len(b)), release: done}, nil
	}
	return &prepared{src: &countingHasher{r: br, h: sha256.New(), limit: s.maxSize}, size: -1, release: func() {}}, nil
}

// inMemory reports whether documents of a media type are read whole to be
// checked: their structure is what they declare only if all of it parses.
func inMemory(mediaType string) bool {
	switch mediaType {
	case "application/pdf", "application/json", "application/xml":
		return true
	}
	return false
}

// checkStructure checks a document held in memory against its declared
// media type.
func checkStructure(mediaType string, b []byte) error {
	switch mediaType {
	case "application/pdf":
		return checkPDF(b)
	case "application/json":
		if !json.Valid(b) {
			return kho.Errorf(kho.EINVALID, "the document is declared application/json but is not well-formed JSON")
		}
	case "application/xml":
		dec := xml.NewDecoder(bytes.NewReader(b))
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return kho.WrapError(kho.EINVALID, "the document is declared application/xml but is not well-formed XML", err)
			}
		}
	}
	return nil
}

// acquire takes one of the slots for documents held in memory, waiting a
// little; when every slot stays taken the deposit is refused as a
// temporary overload, so memory stays bounded whatever the load.
func (s *Service) acquire(ctx context.Context) (func(), error) {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	case <-t.C:
		return nil, kho.Errorf(kho.EUNAVAILABLE, "too many documents are being checked at once; try again shortly")
	case <-ctx.Done():
		return nil, kho.WrapError(kho.EUNAVAILABLE, "the deposit was cancelled", ctx.Err())
	}
}

// errStoreStopped is what the encryption sees when the object store stops
// reading its output.
var errStoreStopped = errors.New("the object store stopped reading")

// encryptedSize is the length of age's payload for size bytes of
// plaintext: 64 KiB chunks, each with a 16-byte tag, and one (empty) chunk
// for an empty plaintext.
func encryptedSize(size int64) int64 {
	chunks := max(1, (size+ageChunk-1)/ageChunk)
	return size + chunks*chacha20poly1305.Overhead
}

const ageChunk = 64 << 10

// headerWriter holds what age writes before the payload (header and
// nonce), so that the object's length is known before the upload starts;
// once started, it passes writes through.
type headerWriter struct {
	head []byte
	to   io.Writer
}

func (h *headerWriter) Write(p []byte) (int, error) {
	if h.to == nil {
		h.head = append(h.head, p...)
		return len(p), nil
	}
	return h.to.Write(p)
}

// encryptToStore streams src through age into a new object, with a known
// length when size (the plaintext's) is not -1. It returns the name the
// object was stored under (another than object when its upload was sent
// again after a timeout: storeAgain), and the wrapped file key and its key
// version.
//
// The file key is wrapped before any of the content past its first bytes
// is read (then, when the length is unknown, up to lookAhead of it): a
// deposit that an erasure overtakes while its content arrives finds the
// store erased when it commits.
func (s *Service) encryptToStore(ctx context.Context, object string, doc kho.DocumentID, subject kho.SubjectHandle, pre *prepared) (string, *transitRecipient, error) {
	rcpt := &transitRecipient{ctx: ctx, keys: s.keys, subject: subject, doc: doc}
	hw := &headerWriter{}
	w, err := age.Encrypt(hw, rcpt)
	if err != nil {
		return "", nil, err // the wrap's own error (Vault), or an internal one
	}
	var src io.Reader = pre.src
	size := pre.size
	if size < 0 {
		var release func()
		src, size, release = s.readAhead(pre.src)
		defer release()
	}
	objectSize := int64(-1)
	if size >= 0 {
		objectSize = int64(len(hw.head)) + encryptedSize(size)
	}
	pr, pw := io.Pipe()
	hw.to = pw
	encErr := make(chan error, 1)
	go func() {
		err := func() error {
			if _, err := pw.Write(hw.head); err != nil {
				return err
			}
			if _, err := io.Copy(w, src); err != nil {
				return err
			}
			return w.Close()
		}()
		pw.CloseWithError(err)
		encErr <- err
	}()
	body := newReplay(pr, objectSize, s.budget)
	putErr := s.blobs.Put(ctx, object, body, objectSize)
	if putErr != nil {
		object, putErr = s.storeAgain(ctx, object, body, objectSize, putErr)
	}
	pr.CloseWithError(errStoreStopped)
	body.release()
	// The content's own failure (too large, unreadable body, Vault) says more
	// than the object store's report of a broken stream; but when the store
	// failed first, the encryption only saw it stop reading, and the
	// store's failure (an outage) is the answer.
	if err := <-encErr; err != nil {
		if errors.Is(err, errStoreStopped) && putErr != nil {
			return "", nil, putErr
		}
		if kho.ErrorCode(err) == kho.EINTERNAL {
			return "", nil, kho.WrapError(kho.EINVALID, "could not read the document", err)
		}
		return "", nil, err
	}
	if putErr != nil {
		return "", nil, putErr
	}
	return object, rcpt, nil
}

// storeAgain sends a kept body again under new object names while its
// upload timed out and the object store is alive (a MinIO cluster stalling
// a write after it lost a node), for up to degradedBudget. A new name,
// recorded first as a pending upload: the store may still be writing the
// timed-out one, holding its name's lock; if that write ever lands, the
// reconciler removes it. It returns the name the body was stored under.
func (s *Service) storeAgain(ctx context.Context, object string, body *replayReader, size int64, err error) (string, error) {
	live, ok := s.blobs.(interface{ Live(context.Context) bool })
	start := time.Now()
	for ok && err != nil && timedOut(err) && time.Since(start) < degradedBudget && ctx.Err() == nil && live.Live(ctx) {
		again, kept := body.Again()
		if !kept {
			break
		}
		next := s.newObjectName()
		if _, perr := s.db.Pool.Exec(ctx, `INSERT INTO pending_objects (object_name) VALUES ($1)`, next); perr != nil {
			break
		}
		object = next
		err = s.blobs.Put(ctx, object, again, size)
	}
	return object, err
}

// timedOut reports whether err is a call that got no answer in time.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !breaker.IsOpen(err)
}

// depositReq is a deposit or a new version.
type depositReq struct {
	meta       *kho.DepositMetadata
	body       io.Reader
	supersedes *docRow // for a new version
}

// Deposit stores a new document for meta.SubjectID (or, when empty, for the
// caller's own store) and returns it. An agency-issued PDF is signed by the
// agency on the way in (PAdES); the stored object is the signed PDF. The content streams: memory use does
// not grow with its size (PDFs excepted, up to their limit).
//
// The order keeps the invariant that no row ever lacks its object: the
// ciphertext goes to the object store first, then one transaction writes the
// row, the audit event and the notification. If the transaction fails, the
// object is an orphan the reconciler removes.
//
// Errors: EINVALID, ETOOLARGE, EFORBIDDEN, ECONFLICT, EUNAVAILABLE.
func (s *Service) Deposit(ctx context.Context, p kho.Principal, meta *kho.DepositMetadata, body io.Reader) (*kho.Document, error) {
	return s.deposit(ctx, p, depositReq{meta: meta, body: body})
}

// Supersede deposits a new version of a document its issuer (or, for a
// self-declared one, its owner) wants to replace; the old version becomes
// superseded and stays visible to the owner.
func (s *Service) Supersede(ctx context.Context, p kho.Principal, old kho.DocumentID, meta *kho.DepositMetadata, body io.Reader) (*kho.Document, error) {
	prev, _, err := s.loadFor(ctx, p, audit.DocumentSuperseded, policies.ChangeDocument, old)
	if err != nil {
		return nil, err
	}
	if prev.Status != kho.StatusValid && prev.Status != kho.StatusExpired {
		return nil, kho.Errorf(kho.ECONFLICT, "only a current document can be superseded; this one is %s", prev.Status)
	}
	if meta.SubjectID != "" && meta.SubjectID != prev.store.Subject {
		return nil, kho.Errorf(kho.EINVALID, "a new version belongs to the same store as the document it supersedes")
	}
	if meta.Type != prev.Type {
		return nil, kho.Errorf(kho.EINVALID, "a new version keeps the document type %s", prev.Type)
	}
	return s.deposit(ctx, p, depositReq{meta: meta, body: body, supersedes: prev})
}

func (s *Service) deposit(ctx context.Context, p kho.Principal, req depositReq) (*kho.Document, error) {
	meta := req.meta
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	subjectID := meta.SubjectID
	if req.supersedes != nil {
		subjectID = req.supersedes.store.Subject
	}
	if subjectID == "" {
		own, ok := p.ActsFor()
		if !ok {
			return nil, kho.Errorf(kho.EINVALID, "subject_id is required")
		}
		subjectID = own
	}
	st, err := postgres.StoreByID(ctx, s.db.Pool, p, subjectID)
	if err != nil {
		return nil, err
	}
	agency, err := postgres.AgencyOf(ctx, s.db.Pool, p)
	if err != nil {
		return nil, err
	}
	docType, err := postgres.DocumentType(ctx, s.db.Pool, meta.Type)
	if err != nil {
		return nil, err
	}
	dec, err := s.decide(ctx, p, audit.DocumentDeposited, policies.DepositDocument,
		policies.Resource{Store: st, Agency: agency, DocType: docType, Deposit: meta})
	if err != nil {
		return nil, err
	}
	source := dec.Source
	if req.supersedes != nil && req.supersedes.Source != source {
		return nil, kho.Errorf(kho.EFORBIDDEN, "a new version must come from the same kind of source as the old one")
	}
	if err := s.checkResultCode(ctx, p, meta, source); err != nil {
		return nil, err
	}
	handle, erased, err := postgres.EnsureStore(ctx, s.db.Pool, subjectID)
	if err != nil {
		return nil, err
	}
	if erased {
		return nil, kho.Refusal(kho.ECONFLICT, policies.ReasonErased, "this store was erased and takes no new documents")
	}
	subj := struct{ handle kho.SubjectHandle }{handle}
	if err := s.keys.EnsureKey(ctx, subj.handle); err != nil {
		return nil, err
	}
	var sign func([]byte) ([]byte, error)
	if s.pdfSign != nil && source == kho.SourceAgencyIssued {
		result := ""
		if meta.ResultNo > 0 {
			result = meta.DossierCode.ResultCode(meta.ResultNo)
		}
		var officer kho.StaffID
		if p.Kind == kho.PrincipalAgencyOfficer {
			officer = p.Staff
		}
		sign = func(b []byte) ([]byte, error) { return s.pdfSign.SignPDF(ctx, p.Agency, officer, b, result) }
	}
	pre, err := s.prepare(ctx, req.body, meta.MediaType, sign)
	if err != nil {
		return nil, err
	}
	defer pre.release() // a document held whole is held until it is stored

	doc := &kho.Document{
		ID: kho.NewDocumentID(), Subject: subj.handle, Type: meta.Type, Name: meta.Name, Number: meta.Number,
		IssueOn: meta.IssuedOn, Source: source, Summary: meta.Summary, ValidFrom: meta.ValidFrom, ValidUntil: meta.ValidUntil,
		Scope: meta.Scope, DossierCode: meta.DossierCode, ProcedureCode: meta.ProcedureCode,
		Status: kho.StatusValid, MediaType: meta.MediaType, Version: 1,
	}
	if source == kho.SourceAgencyIssued {
		doc.Issuer = p.Agency
		if meta.ResultNo > 0 {
			doc.ResultCode = meta.DossierCode.ResultCode(meta.ResultNo)
		}
	}
	doc.ChainID = doc.ID
	if prev := req.supersedes; prev != nil {
		doc.ChainID, doc.Version = prev.ChainID, prev.Version+1
		doc.Supersedes = &prev.ID
	}
	object := s.newObjectName()
	// Recorded before the upload starts, so whatever a crash leaves of it
	// is found by the reconciler.
	if _, err := s.db.Pool.Exec(ctx, `INSERT INTO pending_objects (object_name) VALUES ($1)`, object); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: record the upload", err)
	}
	object, rcpt, err := s.encryptToStore(ctx, object, doc.ID, subj.handle, pre)
	if err != nil {
		return nil, err
	}
	doc.Size, doc.SHA256 = pre.src.n, hex.EncodeToString(pre.src.h.Sum(nil))
	sig, err := s.signer.SignDetached(ctx, signingKeyName(doc), manifestOf(doc).Bytes())
	if err != nil {
		return nil, err
	}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		return s.insert(ctx, tx, p, st, doc, object, rcpt, sig, req.supersedes)
	})
	if err != nil {
		// The object stays behind for the reconciler.
		s.log.WarnContext(ctx, "deposit failed after the object was stored; the reconciler will remove it",
			"document_id", doc.ID, "object", object, "err", err.Error())
		if kho.ErrorReason(err) == policies.ReasonErased {
			// The store was erased while this deposit ran, after EnsureKey
			// may have made its key anew: shred that one too.
			if derr := s.keys.Delete(context.WithoutCancel(ctx), subj.handle); derr != nil {
				s.log.WarnContext(ctx, "subject key recreated by a deposit racing an erasure was not deleted", "subject", subj.handle, "err", derr.Error())
			}
		}
		return nil, err
	}
	return doc, nil
}

// checkResultCode refuses a result code the depositing agency has already
// used: result codes are unique per issuing agency (and a dossier code names
// the agency's own unit, which Authorize checks).
func (s *Service) checkResultCode(ctx context.Context, p kho.Principal, meta *kho.DepositMetadata, source kho.DocumentSource) error {
	if source != kho.SourceAgencyIssued || meta.ResultNo == 0 {
		return nil
	}
	code := meta.DossierCode.ResultCode(meta.ResultNo)
	var taken bool
	err := s.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM documents WHERE issuer = $1 AND result_code = $2)`, string(p.Agency), code).Scan(&taken)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "storage: read result codes", err)
	}
	if taken {
		return kho.Errorf(kho.ECONFLICT, "result %s has already been deposited", code)
	}
	return nil
}

// insert writes the document row, its audit event and its notification, and
// for a new version marks the old one superseded, all in tx.
func (s *Service) insert(ctx context.Context, tx pgx.Tx, p kho.Principal, st *policies.Store, doc *kho.Document, object string, rcpt *transitRecipient, sig string, prev *docRow) error {
	// A rewrap running for this subject retires key versions under this
	// lock; a wrap made with a version it retired must not commit. An
	// erasure takes the same row's lock: if it committed while this deposit
	// ran, the document must not land in the erased store.
	var minVersion int
	var erased bool
	if err := tx.QueryRow(ctx, `SELECT key_min_version, erased_at IS NOT NULL FROM subjects WHERE handle = $1 FOR SHARE`, doc.Subject).Scan(&minVersion, &erased); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "storage: lock subject", err)
	}
	if erased {
		return kho.Refusal(kho.ECONFLICT, policies.ReasonErased, "this store was erased while the document was being deposited")
	}
	if rcpt.version < minVersion {
		return kho.Errorf(kho.EUNAVAILABLE, "the subject's key was rotated during the deposit; send it again")
	}
	// Under an Idempotency-Key, the document commits only while the key's
	// claim is still this request's, and the claim learns its id: a retry
	// after this khod died answers with it instead of depositing again.
	if err := postgres.RecordResult(ctx, tx, string(doc.ID)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM pending_objects WHERE object_name = $1`, object); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "storage: record the upload", err)
	}
	if prev != nil {
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM documents WHERE id = $1 FOR UPDATE`, prev.ID).Scan(&status); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: lock document", err)
		}
		if status != string(kho.StatusValid) {
			return kho.Errorf(kho.ECONFLICT, "the document was changed meanwhile (now %s)", status)
		}
	}
	sum, _ := hex.DecodeString(doc.SHA256)
	var issuer, dossier, procedure, result any
	if doc.Issuer != "" {
		issuer = string(doc.Issuer)
	}
	if doc.DossierCode != "" {
		dossier = string(doc.DossierCode)
	}
	if doc.ProcedureCode != "" {
		procedure = doc.ProcedureCode
	}
	if doc.ResultCode != "" {
		result = doc.ResultCode
	}
	err := tx.QueryRow(ctx, `INSERT INTO documents (id, subject_handle, type_code, name, number, issued_on, issuer, source, summary,
		valid_from, valid_until, scope, dossier_code, procedure_code, result_code, status, media_type, size, sha256,
		chain_id, version, supersedes, object_name, wrapped_key, key_version, signature)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'valid', $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)
		RETURNING created_at`,
		doc.ID, doc.Subject, doc.Type, doc.Name, doc.Number, doc.IssueOn.Time, issuer, doc.Source, doc.Summary,
		dateOrNil(doc.ValidFrom), dateOrNil(doc.ValidUntil), doc.Scope, dossier, procedure, result, doc.MediaType, doc.Size, sum,
		doc.ChainID, doc.Version, doc.Supersedes, object, rcpt.wrapped, rcpt.version, sig).Scan(&doc.CreatedAt)
	if err != nil {
		if postgres.IsUniqueViolation(err) {
			return kho.Errorf(kho.ECONFLICT, "a document with this result code or version already exists")
		}
		return kho.WrapError(kho.EUNAVAILABLE, "storage: insert document", err)
	}
	action := audit.DocumentDeposited
	details := map[string]any{"type": doc.Type, "size": doc.Size, "source": doc.Source, "version": doc.Version}
	if prev != nil {
		if _, err := tx.Exec(ctx, `UPDATE documents SET status = 'superseded', superseded_by = $2, status_changed_at = now() WHERE id = $1`, prev.ID, doc.ID); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: supersede document", err)
		}
		action, details["supersedes"] = audit.DocumentSuperseded, prev.ID
	}
	if err := audit.Record(ctx, tx, audit.Event{Action: action, Outcome: audit.Success, Actor: p, Subject: doc.Subject, Document: doc.ID,
		ActingFor: st.ActingFor(), Details: details}); err != nil {
		return err
	}
	payload := map[string]any{"document_id": doc.ID, "type": doc.Type, "issuer": doc.Issuer}
	if prev != nil {
		// Holders of the old version are the ones to tell.
		payload["document_id"], payload["superseded_by"] = prev.ID, doc.ID
	}
	return notify(ctx, tx, action, doc.Subject, payload)
}

// notify queues a notification in tx.
func notify(ctx context.Context, tx pgx.Tx, topic string, subject kho.SubjectHandle, payload map[string]any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return kho.WrapError(kho.EINTERNAL, "storage: encode notification", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (topic, subject_handle, payload) VALUES ($1, $2, $3)`, topic, subject, b); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "storage: queue notification", err)
	}
	return nil
}

func dateOrNil(d *kho.Date) any {
	if d == nil {
		return nil
	}
	return d.Time
}
