package api

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/policies"
	"kho/storage"
)

// Documents is the document service the routes call; *storage.Service meets
// it.
type Documents interface {
	Deposit(ctx context.Context, p kho.Principal, meta *kho.DepositMetadata, body io.Reader) (*kho.Document, error)
	Supersede(ctx context.Context, p kho.Principal, old kho.DocumentID, meta *kho.DepositMetadata, body io.Reader) (*kho.Document, error)
	Resolve(ctx context.Context, p kho.Principal, id kho.SubjectID) (kho.SubjectHandle, error)
	StoreFor(ctx context.Context, p kho.Principal, action policies.Action, id kho.SubjectID) (*policies.Store, error)
	List(ctx context.Context, p kho.Principal, h kho.SubjectHandle, f storage.ListFilter) (*storage.Page, error)
	ListFor(ctx context.Context, p kho.Principal, id kho.SubjectID, f storage.ListFilter) (*storage.Page, error)
	Get(ctx context.Context, p kho.Principal, id kho.DocumentID) (*kho.Document, error)
	// Deposited is the metadata p's own deposit made, for its retry.
	Deposited(ctx context.Context, p kho.Principal, id kho.DocumentID) (*kho.Document, error)
	Open(ctx context.Context, p kho.Principal, id kho.DocumentID, rng *storage.ByteRange) (*storage.Content, error)
	Fetch(ctx context.Context, p kho.Principal, id kho.DocumentID, procedure string, rng *storage.ByteRange) (*storage.Content, error)
	Verify(ctx context.Context, p kho.Principal, id kho.DocumentID) (*storage.Report, error)
	Revoke(ctx context.Context, p kho.Principal, id kho.DocumentID, reason string) (*kho.Document, error)
	PlaceHold(ctx context.Context, p kho.Principal, h kho.SubjectHandle, req storage.HoldRequest) (*storage.Hold, error)
	ListHolds(ctx context.Context, p kho.Principal, id kho.SubjectID) ([]storage.Hold, error)
	ReleaseHold(ctx context.Context, p kho.Principal, h kho.SubjectHandle, holdID, reason string) error
	Erase(ctx context.Context, p kho.Principal, h kho.SubjectHandle) (int, error)
}

var _ Documents = (*storage.Service)(nil)

func (s *Server) documentRoutes(v1 *gin.RouterGroup) {
	v1.POST("/documents", s.idempotent(upTo), s.deposit)
	v1.GET("/documents/:id", s.getDocument)
	v1.GET("/documents/:id/content", s.download)
	v1.GET("/documents/:id/verification", s.verify)
	v1.POST("/documents/:id/versions", s.idempotent(upTo), s.supersede)
	v1.POST("/documents/:id/revocation", s.revoke)
	v1.POST("/subjects/resolve", s.resolve)
	v1.GET("/subjects/:handle/documents", s.list)
	v1.GET("/me/documents", s.listMine)
	v1.GET("/me/legal-holds", s.myHolds)
	v1.POST("/subjects/:handle/legal-holds", s.placeHold)
	v1.POST("/subjects/:handle/legal-holds/:hold/release", s.releaseHold)
	v1.POST("/subjects/:handle/erasure", s.erase)
}

func principal(c *gin.Context) kho.Principal {
	p, _ := kho.FromContext(c.Request.Context())
	return p
}

// readUpload reads a multipart/form-data deposit: a "metadata" part (JSON)
// first, then a "file" part, which is returned unread so it can stream.
func (s *Server) readUpload(c *gin.Context) (*kho.DepositMetadata, io.Reader, error) {
	ct, params, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || ct != "multipart/form-data" || params["boundary"] == "" {
		return nil, nil, kho.Errorf(kho.EINVALID, "a deposit is multipart/form-data with a metadata part, then a file part")
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxUploadSize)
	// mime/multipart reads through a 4 KiB buffer: read the connection in
	// large pieces beneath it, a system call per 64 KiB rather than per 4.
	mr := multipart.NewReader(bufio.NewReaderSize(c.Request.Body, 64<<10), params["boundary"])
	part, err := mr.NextPart()
	if err != nil || part.FormName() != "metadata" {
		return nil, nil, kho.Errorf(kho.EINVALID, `the first part must be named "metadata"`)
	}
	b, err := io.ReadAll(io.LimitReader(part, kho.MaxMetadataSize+1))
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINVALID, "could not read the metadata part", err)
	}
	meta, err := kho.ParseDepositMetadata(b)
	if err != nil {
		return nil, nil, err
	}
	file, err := mr.NextPart()
	if err != nil || file.FormName() != "file" {
		return nil, nil, kho.Errorf(kho.EINVALID, `the second part must be named "file"`)
	}
	return meta, &uploadReader{r: file}, nil
}

// uploadReader turns the body limit's error into kho's.
type uploadReader struct{ r io.Reader }

func (u *uploadReader) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return n, kho.Errorf(kho.ETOOLARGE, "the upload is larger than %d bytes", mbe.Limit)
	}
	return n, err
}

func (s *Server) deposit(c *gin.Context) {
	s.depositWith(c, func(meta *kho.DepositMetadata, body io.Reader) (*kho.Document, error) {
		return s.cfg.Documents.Deposit(c.Request.Context(), principal(c), meta, body)
	})
}

func (s *Server) supersede(c *gin.Context) {
	s.depositWith(c, func(meta *kho.DepositMetadata, body io.Reader) (*kho.Document, error) {
		return s.cfg.Documents.Supersede(c.Request.Context(), principal(c), kho.DocumentID(c.Param("id")), meta, body)
	})
}

// depositWith answers a deposit or a new version: 201 with the document.
// A retry under the Idempotency-Key of a deposit that committed before its
// khod died unanswered gets that document, not a second one.
func (s *Server) depositWith(c *gin.Context, store func(*kho.DepositMetadata, io.Reader) (*kho.Document, error)) {
	var d *kho.Document
	var err error
	if id, ok := committed(c); ok {
		d, err = s.cfg.Documents.Deposited(c.Request.Context(), principal(c), kho.DocumentID(id))
	} else {
		var meta *kho.DepositMetadata
		var body io.Reader
		if meta, body, err = s.readUpload(c); err == nil {
			if d, err = store(meta, body); err == nil {
				s.cfg.Observer.ObserveBytes("deposited", d.Size)
			}
		}
	}
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Location", "/v1/documents/"+string(d.ID))
	c.JSON(http.StatusCreated, d)
}

func (s *Server) getDocument(c *gin.Context) {
	d, err := s.cfg.Documents.Get(c.Request.Context(), principal(c), kho.DocumentID(c.Param("id")))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

func (s *Server) verify(c *gin.Context) {
	r, err := s.cfg.Documents.Verify(c.Request.Context(), principal(c), kho.DocumentID(c.Param("id")))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

// parseRange reads a single "bytes=first-last", "bytes=first-" or
// "bytes=-suffix" range; storage resolves it against the document's size.
// Several ranges, or other units, are answered with the whole document,
// which HTTP allows.
func parseRange(h string) (*storage.ByteRange, bool, error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if h == "" || !ok || strings.Contains(spec, ",") {
		return nil, false, nil
	}
	malformed := kho.Errorf(kho.EINVALID, "malformed Range header")
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return nil, true, malformed
	}
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return nil, true, malformed
		}
		return &storage.ByteRange{Suffix: n}, true, nil
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return nil, true, malformed
	}
	last := int64(-1)
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return nil, true, malformed
		}
	}
	return &storage.ByteRange{First: first, Last: last}, true, nil
}

// download streams a document's plaintext. The read is recorded before the
// first byte is sent. If the stored object fails authentication mid-stream,
// the connection is aborted, so the client sees a broken transfer, never
// altered bytes presented as complete.
func (s *Server) download(c *gin.Context) {
	ctx := c.Request.Context()
	p := principal(c)
	id := kho.DocumentID(c.Param("id"))
	var rng *storage.ByteRange
	procedure := c.Query("procedure")
	// A fetch for a procedure (reuse by another agency) serves the whole
	// document: a partial read would spend a consent's use all the same.
	if h := c.GetHeader("Range"); h != "" && procedure == "" {
		r, ranged, err := parseRange(h)
		if err != nil {
			writeError(c, err)
			return
		}
		if ranged {
			rng = r
		}
	}
	var content *storage.Content
	var err error
	var deliverTo jwk.Key
	streamed := acceptsMedia(c, MediaTypeJWEStream)
	if procedure != "" && p.Kind == kho.PrincipalAgency && s.wantsEncrypted(c) {
		// Refused before anything is fetched or any consent used.
		if deliverTo, err = s.deliveryKey(ctx, p.Agency); err != nil {
			writeError(c, err)
			return
		}
		if !streamed {
			ctx = storage.WithMaxFetchSize(ctx, maxEncryptedDelivery)
			// One JWE is made in memory: its slot is taken before the
			// fetch is decided, so a busy server answers 503 without
			// spending a consent's use.
			leave, err := s.deliveryGate.enter(ctx)
			if err != nil {
				writeError(c, err)
				return
			}
			defer leave()
		}
	}
	if procedure != "" {
		if n := c.GetHeader("Kho-Fetch-Nonce"); n != "" {
			if !nonceRE.MatchString(n) {
				errorf(c, kho.EINVALID, "Kho-Fetch-Nonce must be 16 to 64 characters of A-Z, a-z, 0-9, - and _")
				return
			}
			ctx = kho.WithFetchNonce(ctx, n)
		}
		content, err = s.cfg.Documents.Fetch(ctx, p, id, procedure, nil)
		switch code := kho.ErrorCode(err); code {
		case "":
			s.cfg.Observer.ObserveDecision(true, "")
		case kho.EFORBIDDEN, kho.ENOTFOUND, kho.EINVALID:
			s.cfg.Observer.ObserveDecision(false, kho.ErrorReason(err))
		}
	} else {
		content, err = s.cfg.Documents.Open(ctx, p, id, rng)
	}
	var outside *storage.RangeError
	if errors.As(err, &outside) {
		c.Header("Content-Range", fmt.Sprintf("bytes */%d", outside.Size))
		writeProblem(c, http.StatusRequestedRangeNotSatisfiable, kho.EINVALID, err)
		return
	}
	if err != nil {
		writeError(c, err)
		return
	}
	defer content.Body.Close()
	if deliverTo != nil {
		// Encrypted as asked (or as the deployment says), the agency's own
		// documents too; a use receipt comes with reuse only.
		if content.UseReceipt != "" {
			c.Header("Kho-Use-Receipt", content.UseReceipt)
			c.Header("Kho-Use-Receipt-Id", content.UseReceiptID)
		}
		if streamed {
			s.deliverStream(c, deliverTo, content)
		} else {
			s.deliverEncrypted(c, deliverTo, content)
		}
		return
	}
	d := content.Document
	h := c.Writer.Header()
	h.Set("Content-Type", d.MediaType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, d.ID))
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"sha256:`+d.SHA256+`"`)
	h.Set("Cache-Control", "private, no-store")
	if content.ManifestJWS != "" {
		h.Set("Kho-Manifest-Signature", content.ManifestJWS)
	}
	if content.UseReceipt != "" {
		// The proof of this use, to keep: also at /v1/use-receipts/{id}.
		h.Set("Kho-Use-Receipt", content.UseReceipt)
		h.Set("Kho-Use-Receipt-Id", content.UseReceiptID)
	}
	status, length := http.StatusOK, d.Size
	if content.Range != nil {
		status, length = http.StatusPartialContent, content.Range.Last-content.Range.First+1
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", content.Range.First, content.Range.Last, d.Size))
	} else if sum, err := hex.DecodeString(d.SHA256); err == nil {
		h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	c.Status(status)
	n, err := copyContent(c.Writer, content.Body)
	s.cfg.Observer.ObserveBytes("served", n)
	if err != nil {
		_ = c.Error(err)
		if kho.ErrorCode(err) == kho.EINTEGRITY {
			panic(http.ErrAbortHandler)
		}
	}
}

// nonceRE is the form of a fetch's nonce (base64url or hex, 16 to 64).
var nonceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

func (s *Server) revoke(c *gin.Context) {
	var body struct {
		Reason string `json:"reason" required:"true"`
	}
	if err := decodeJSON(c, &body); err != nil {
		writeError(c, err)
		return
	}
	d, err := s.cfg.Documents.Revoke(c.Request.Context(), principal(c), kho.DocumentID(c.Param("id")), body.Reason)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

func (s *Server) resolve(c *gin.Context) {
	var body struct {
		SubjectID kho.SubjectID `json:"subject_id" required:"true"`
	}
	if err := decodeJSON(c, &body); err != nil {
		writeError(c, err)
		return
	}
	h, err := s.cfg.Documents.Resolve(c.Request.Context(), principal(c), body.SubjectID)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"handle": h})
}

func listFilter(c *gin.Context) (storage.ListFilter, error) {
	f := storage.ListFilter{
		Type:   c.Query("type"),
		Status: kho.DocumentStatus(c.Query("status")),
		Issuer: kho.AgencyCode(c.Query("issuer")),
		Cursor: kho.DocumentID(c.Query("cursor")),
	}
	n, err := queryLimit(c)
	f.Limit = n
	return f, err
}

// queryLimit reads the optional limit query parameter (0 when absent).
func queryLimit(c *gin.Context) (int, error) {
	l := c.Query("limit")
	if l == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil {
		return 0, kho.Errorf(kho.EINVALID, "limit must be a number")
	}
	return n, nil
}

func (s *Server) list(c *gin.Context) {
	s.listStore(c, kho.SubjectHandle(c.Param("handle")))
}

// onBehalfOfQuery reads the store a guardian or representative selects with
// ?on_behalf_of=; empty means the caller's own.
func onBehalfOfQuery(c *gin.Context) kho.SubjectID { return kho.SubjectID(c.Query("on_behalf_of")) }

// listMine lists the caller's own store (a citizen's, or the business a
// representative acts for), or with ?on_behalf_of= a ward's.
func (s *Server) listMine(c *gin.Context) {
	f, err := listFilter(c)
	if err != nil {
		writeError(c, err)
		return
	}
	page, err := s.cfg.Documents.ListFor(c.Request.Context(), principal(c), onBehalfOfQuery(c), f)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (s *Server) listStore(c *gin.Context, h kho.SubjectHandle) {
	f, err := listFilter(c)
	if err != nil {
		writeError(c, err)
		return
	}
	page, err := s.cfg.Documents.List(c.Request.Context(), principal(c), h, f)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

// myHolds shows the owner's side the legal holds on the store.
func (s *Server) myHolds(c *gin.Context) {
	holds, err := s.cfg.Documents.ListHolds(c.Request.Context(), principal(c), onBehalfOfQuery(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"legal_holds": holds})
}

func (s *Server) placeHold(c *gin.Context) {
	var body storage.HoldRequest
	if err := decodeJSON(c, &body); err != nil {
		writeError(c, err)
		return
	}
	hold, err := s.cfg.Documents.PlaceHold(c.Request.Context(), principal(c), kho.SubjectHandle(c.Param("handle")), body)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, hold)
}

func (s *Server) releaseHold(c *gin.Context) {
	var body struct {
		Reason string `json:"reason"`
	}
	if c.Request.ContentLength != 0 {
		if err := decodeJSON(c, &body); err != nil {
			writeError(c, err)
			return
		}
	}
	if err := s.cfg.Documents.ReleaseHold(c.Request.Context(), principal(c), kho.SubjectHandle(c.Param("handle")), c.Param("hold"), body.Reason); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"hold": c.Param("hold"), "released": true})
}

func (s *Server) erase(c *gin.Context) {
	if err := noBody(c); err != nil {
		writeError(c, err)
		return
	}
	n, err := s.cfg.Documents.Erase(c.Request.Context(), principal(c), kho.SubjectHandle(c.Param("handle")))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"erased_documents": n})
}

// decodeJSON reads a small JSON body strictly (kho.DecodeObject): every
// wrong, unknown, repeated or missing field is named in the answer.
// maxJSONBody bounds a JSON request body.
const maxJSONBody = 64 << 10

func decodeJSON(c *gin.Context, v any) error {
	if ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); ct != "application/json" {
		return kho.Errorf(kho.EINVALID, "the body must be application/json")
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, maxJSONBody+1))
	if err != nil {
		return kho.WrapError(kho.EINVALID, "could not read the body", err)
	}
	if len(b) > maxJSONBody {
		return kho.Errorf(kho.ETOOLARGE, "a JSON body may be at most 64 KiB")
	}
	return kho.DecodeObject(b, v)
}

// noBody refuses a body on a route that takes none, rather than ignoring
// what the caller meant by it.
func noBody(c *gin.Context) error {
	if c.Request.ContentLength != 0 {
		return kho.Errorf(kho.EINVALID, "this route takes no body")
	}
	return nil
}

// copyBuffers are the buffers documents are served through.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyContent writes a document's plaintext to w in writes of 256 KiB,
// each filled before it is written (the decryption hands out 64 KiB at a
// time): a quarter of the system calls of io.Copy's 32 KiB, and no
// allocation per download.
func copyContent(w io.Writer, r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var total int64
	for {
		// Fill the buffer; only io.EOF ends the content cleanly (a reader
		// reporting io.ErrUnexpectedEOF itself is a failure, not an end).
		n := 0
		var rerr error
		for n < len(buf) && rerr == nil {
			var m int
			m, rerr = r.Read(buf[n:])
			n += m
		}
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
