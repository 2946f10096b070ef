package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
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
	Complete(ctx context.Context, owner, key, claim string, requestHash []byte, requestLen int64, status int, contentType, location string, body []byte) error
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
// compared byte for byte (a multipart retry must keep its boundary), all
// of it for a JSON write, and for a deposit (body is upTo) up to the end
// of its file part, which is all a deposit reads. Without the header
// nothing changes.
func (s *Server) idempotent(body bodyRead) gin.HandlerFunc {
	return func(c *gin.Context) {
		keys := c.Request.Header.Values("Idempotency-Key")
		if len(keys) == 0 || s.cfg.Idempotency == nil {
			c.Next()
			return
		}
		if len(keys) > 1 {
			errorf(c, kho.EINVALID, "send one Idempotency-Key header, not several")
			return
		}
		key := keys[0]
		if key == "" || len(key) > 255 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			errorf(c, kho.EINVALID, "Idempotency-Key must be 1 to 255 visible ASCII characters")
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
		head := body.head(c, route)
		h := sha256.New()
		h.Write([]byte(head))
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
			// Same key: the same request gets the same answer (another
			// route is told so before the body is read).
			if rec.Route != route {
				keyReused(c)
				return
			}
			same, err := s.sameRequest(c, c.Request.Body, head, body, rec.RequestHash, rec.RequestLen, rec.RequestLen == 0)
			if err != nil {
				writeError(c, err)
				return
			}
			if !same {
				keyReused(c)
				return
			}
			// What follows the part compared is read as a refusal's
			// would be, so that a client still sending gets the answer.
			drainBody(c, rec.Status)
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
		if rec.Result != "" {
			// A claim taken over from a request that committed before its
			// khod died carries what it committed, for the handler to
			// answer with, if this is the same request (while its body is
			// compared, the claim is renewed). Otherwise the key is
			// released, and stays for the request that is.
			same, err := s.sameRequest(c, hb, head, body, rec.ResultHash, rec.ResultLen, body == whole)
			if err != nil {
				writeError(c, err)
				return
			}
			if !same {
				keyReused(c)
				return
			}
			c.Header("Idempotent-Replayed", "true")
			c.Set(ctxCommitted, rec.Result)
		}
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
		// A deposit is compared up to what it read; a JSON write, with
		// what it left unread too, within the bounds a refusal's drain
		// has (beyond them, up to where the drain stopped).
		reqHash, reqLen := h.Sum(nil), hb.n
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(drainTime))
		if n, err := io.Copy(io.Discard, io.LimitReader(c.Request.Body, drainLimit+1)); body == whole {
			reqHash, reqLen = h.Sum(nil), hb.n
			if err == nil && n <= drainLimit {
				reqLen = 0 // all of it
			}
		}
		if err := s.cfg.Idempotency.Complete(context.WithoutCancel(ctx), owner, key, rec.Claim, reqHash, reqLen, status, w.Header().Get("Content-Type"), w.Header().Get("Location"), w.body.Bytes()); err != nil {
			_ = c.Error(err)
		}
	}
}

// keyReused refuses a request under a key another request used.
func keyReused(c *gin.Context) {
	writeProblem(c, http.StatusUnprocessableEntity, kho.EINVALID,
		kho.Errorf(kho.EINVALID, "this Idempotency-Key was used for another request: use a new key for a new request"))
}

// ctxCommitted holds, for a handler, what an earlier request under the same
// Idempotency-Key committed before its khod died without answering.
const ctxCommitted = "kho.idempotency.committed"

// answerCommitted answers, with 201 and what read finds, a request whose
// Idempotency-Key an earlier attempt committed under before its khod died
// unanswered (a consent request, a grant: the id it made), and reports
// whether it did.
func answerCommitted[T any](c *gin.Context, read func(context.Context, kho.Principal, string) (T, error)) bool {
	id, ok := committed(c)
	if !ok {
		return false
	}
	v, err := read(c.Request.Context(), principal(c), id)
	if err != nil {
		writeError(c, err)
		return true
	}
	c.JSON(http.StatusCreated, v)
	return true
}

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

// bodyRead is how much of its body a write reads: a JSON write all of it,
// a deposit up to the end of its file part (what follows is nothing it
// reads), so that is what a retry under its key is compared over.
type bodyRead int

const (
	whole bodyRead = iota
	upTo
)

// head is what a request's hash starts with: its route, and for a deposit
// the boundary its parts are read with (the same bytes under another
// boundary are another deposit, or none).
func (b bodyRead) head(c *gin.Context, route string) string {
	if b == whole {
		return route + "\n"
	}
	ct := c.GetHeader("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		// Never read as a deposit; never the same as one that is.
		return route + "\nunparsed " + strconv.Quote(ct) + "\n"
	}
	return route + "\n" + mt + "; boundary=" + strconv.Quote(params["boundary"]) + "\n"
}

// limit is the most of a body a retry is compared over: a JSON write's
// bound, or a deposit's.
func (b bodyRead) limit(s *Server) int64 {
	if b == whole {
		return maxJSONBody
	}
	return s.cfg.MaxUploadSize
}

// sameRequest reports whether head and the body read from r (its first n
// bytes, or all of it when n is 0) hash as want; ending says that the body
// must end there. Nothing to compare with (want nil: the route is part of
// the hash) is not the same request, rather than another's answer given.
func (s *Server) sameRequest(c *gin.Context, r io.ReadCloser, head string, b bodyRead, want []byte, n int64, ending bool) (bool, error) {
	h := sha256.New()
	h.Write([]byte(head))
	body := http.MaxBytesReader(c.Writer, r, b.limit(s))
	if n > 0 {
		body = io.NopCloser(io.LimitReader(body, n))
	}
	read, err := io.Copy(h, body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return false, kho.Errorf(kho.ETOOLARGE, "the body is larger than %d bytes", mbe.Limit)
	}
	if err != nil {
		return false, kho.WrapError(kho.EINVALID, "the request body could not be read", err)
	}
	if want == nil || (n > 0 && read != n) || !bytes.Equal(h.Sum(nil), want) {
		return false, nil
	}
	if n > 0 && ending {
		var more [1]byte
		if m, _ := io.ReadFull(r, more[:]); m != 0 {
			return false, nil
		}
	}
	return true, nil
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
