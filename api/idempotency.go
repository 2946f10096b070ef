package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"kho"
	"kho/postgres"
)

// Idempotency keeps Idempotency-Key answers; *postgres.Idempotency meets it.
type Idempotency interface {
	Begin(ctx context.Context, owner, key, route string) (*postgres.Idempotent, error)
	Complete(ctx context.Context, owner, key, claim string, requestHash []byte, status int, contentType, location string, body []byte) error
	Release(ctx context.Context, owner, key, claim string) error
	// Heartbeat keeps a pending key claimed while its request is at work;
	// a key whose heartbeats stop (its khod died) is taken over by a retry.
	Heartbeat(ctx context.Context, owner, key, claim string) error
}

// maxReplayBody bounds an answer kept for replay.
const maxReplayBody = 1 << 20

// idempotent makes a write safe to retry (the IETF Idempotency-Key header):
// the first request with a key does the work and its answer is kept for
// 24 hours; a retry with the same key and the same body gets that answer
// again (Idempotent-Replayed: true), the same key with another body or
// route is 422, and while the first is still at work a retry is 409. Only
// a success is kept: any other answer releases the key. The body is
// compared byte for byte (a multipart retry must keep its boundary).
// Without the header nothing changes.
func (s *Server) idempotent() gin.HandlerFunc {
	return func(c *gin.Context) {
		key := c.GetHeader("Idempotency-Key")
		if key == "" || s.cfg.Idempotency == nil {
			c.Next()
			return
		}
		if len(key) > 255 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			errorf(c, kho.EINVALID, "Idempotency-Key must be 1 to 255 visible ASCII characters")
			return
		}
		if len(c.Request.Header.Values("Idempotency-Key")) > 1 {
			errorf(c, kho.EINVALID, "send one Idempotency-Key header, not several")
			return
		}
		ctx := c.Request.Context()
		owner := ownerOf(principal(c))
		route := c.Request.Method + " " + c.Request.URL.Path
		if !utf8.ValidString(route) || strings.ContainsRune(route, 0) {
			// No resource has such a name, and the key's record could not
			// hold it.
			errorf(c, kho.EINVALID, "the request path must be valid UTF-8, without NUL")
			return
		}
		h := sha256.New()
		h.Write([]byte(route + "\n"))
		rec, err := s.cfg.Idempotency.Begin(ctx, owner, key, route)
		if err != nil {
			writeError(c, err)
			return
		}
		if !rec.Fresh {
			if rec.Pending {
				c.Header("Retry-After", "1")
				errorf(c, kho.ECONFLICT, "a request with this Idempotency-Key is still at work: retry later")
				return
			}
			// Same key: the same request gets the same answer.
			if _, err := io.Copy(h, http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxUploadSize)); err != nil {
				writeError(c, kho.WrapError(kho.EINVALID, "the request body could not be read", err))
				return
			}
			if rec.Route != route || (rec.RequestHash != nil && !bytes.Equal(h.Sum(nil), rec.RequestHash)) {
				writeProblem(c, http.StatusUnprocessableEntity, kho.EINVALID,
					kho.Errorf(kho.EINVALID, "this Idempotency-Key was used for another request: use a new key for a new request"))
				return
			}
			c.Header("Idempotent-Replayed", "true")
			if rec.Location != "" {
				c.Header("Location", rec.Location)
			}
			c.Data(rec.Status, rec.ContentType, rec.Body)
			c.Abort()
			return
		}
		hb := &hashingBody{ReadCloser: c.Request.Body, h: h}
		c.Request.Body = hb
		// The work learns its claim (postgres.RecordResult), with how much
		// of the body it had read when it committed.
		c.Request = c.Request.WithContext(postgres.WithClaim(ctx, owner, key, rec.Claim, func() ([]byte, int64) { return h.Sum(nil), hb.n }))
		if rec.Result != "" {
			// A claim taken over from a request that committed before its
			// khod died carries what it committed, for the handler to
			// answer with, if this is the same request: the body must
			// start as the one that committed did.
			if !s.sameStart(c, hb, route, rec) {
				_ = s.cfg.Idempotency.Release(context.WithoutCancel(ctx), owner, key, rec.Claim)
				writeProblem(c, http.StatusUnprocessableEntity, kho.EINVALID,
					kho.Errorf(kho.EINVALID, "this Idempotency-Key was used for another request: use a new key for a new request"))
				return
			}
			c.Header("Idempotent-Replayed", "true")
			c.Set(ctxCommitted, rec.Result)
		}
		w := &recordingWriter{ResponseWriter: c.Writer}
		c.Writer = w
		stop := make(chan struct{})
		go func() {
			t := time.NewTicker(postgres.HeartbeatEvery)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					_ = s.cfg.Idempotency.Heartbeat(hctx, owner, key, rec.Claim)
					cancel()
				}
			}
		}()
		// The claim is renewed until it is completed or released; a handler
		// that panics releases it on the way out.
		defer close(stop)
		settled := false
		defer func() {
			if !settled {
				_ = s.cfg.Idempotency.Release(context.WithoutCancel(ctx), owner, key, rec.Claim)
			}
		}()
		c.Next()
		settled = true
		status := w.Status()
		// The work is done: keep the answer. A refusal or a failure is not
		// kept, so that a retry is decided again, as a new request (and
		// the rest of its body is not waited for: drainBody read what it
		// could before the refusal was sent).
		if status/100 != 2 || w.overflow {
			_ = s.cfg.Idempotency.Release(context.WithoutCancel(ctx), owner, key, rec.Claim)
			return
		}
		// What the handler left unread counts too (a retry is compared
		// with the whole body), within the bounds a refusal's drain has.
		var reqHash []byte
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(drainTime))
		if n, err := io.Copy(io.Discard, io.LimitReader(c.Request.Body, drainLimit+1)); err == nil && n <= drainLimit {
			reqHash = h.Sum(nil)
		} else {
			// More after the document than anyone sends: the answer is
			// kept for the body up to its document, and a retry is
			// answered from it whatever follows.
			reqHash = nil
		}
		if err := s.cfg.Idempotency.Complete(context.WithoutCancel(ctx), owner, key, rec.Claim, reqHash, status, w.Header().Get("Content-Type"), w.Header().Get("Location"), w.body.Bytes()); err != nil {
			_ = c.Error(err)
		}
	}
}

// ctxCommitted holds, for a handler, what an earlier request under the same
// Idempotency-Key committed before its khod died without answering.
const ctxCommitted = "kho.idempotency.committed"

// committed returns what an earlier request under this request's key
// committed, if anything.
func committed(c *gin.Context) (string, bool) {
	v, ok := c.Get(ctxCommitted)
	if !ok {
		return "", false
	}
	s, _ := v.(string)
	return s, s != ""
}

// ownerOf names a caller for its keys without personal data: a hash of
// who it is, and of its token's scope, so that a token without the scope
// of a request is never answered from another token's.
func ownerOf(p kho.Principal) string {
	scope := ""
	if p.Scoped {
		// A scope is a set: the same scopes in another order are the same
		// caller.
		s := strings.Fields(p.Scope)
		slices.Sort(s)
		scope = "scope:" + strings.Join(slices.Compact(s), " ")
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{string(p.Kind), string(p.Person), string(p.Business), string(p.Agency), string(p.Staff), scope}, "\x00")))
	return hex.EncodeToString(sum[:])
}

type hashingBody struct {
	io.ReadCloser
	h hash.Hash
	n int64 // bytes read
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	return n, err
}

// sameStart reads the first rec.ResultLen bytes of the body and reports
// whether they, with the route, hash as those of the request that
// committed rec.Result did.
func (s *Server) sameStart(c *gin.Context, hb *hashingBody, route string, rec *postgres.Idempotent) bool {
	if rec.ResultHash == nil {
		// Nothing to compare with (the route is part of the hash): not
		// answered from, rather than answered for another request.
		return false
	}
	start := sha256.New()
	start.Write([]byte(route + "\n"))
	body := http.MaxBytesReader(c.Writer, hb, s.cfg.MaxUploadSize)
	n, err := io.Copy(start, io.LimitReader(body, rec.ResultLen))
	if err != nil || n != rec.ResultLen || !bytes.Equal(start.Sum(nil), rec.ResultHash) {
		return false
	}
	if ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); strings.HasPrefix(ct, "multipart/") {
		// A deposit commits after the delimiter that ends its file part
		// was read: what follows is nothing the deposit reads.
		return true
	}
	// A JSON write (or one without a body) had read its whole body when
	// it committed: the retry's must end there too.
	var more [1]byte
	m, err := io.ReadFull(body, more[:])
	return m == 0 && err == io.EOF
}

type recordingWriter struct {
	gin.ResponseWriter
	body     bytes.Buffer
	overflow bool
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recordingWriter) keep(p []byte) {
	if w.body.Len()+len(p) > maxReplayBody {
		w.overflow = true
		return
	}
	w.body.Write(p)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.keep(p)
	return w.ResponseWriter.Write(p)
}

func (w *recordingWriter) WriteString(s string) (int, error) {
	w.keep([]byte(s))
	return w.ResponseWriter.WriteString(s)
}
