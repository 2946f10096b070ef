package api

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"kho"
)

// Problem is an RFC 9457 problem detail. Detail is always the safe message of
// a kho.Error: never personal data, document contents or internal errors.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Code      string `json:"code"`
	Reason    string `json:"reason,omitempty"` // a stable refusal reason, when there is one
	RequestID string `json:"request_id,omitempty"`
	// Dependency names the server that failed, on a 503: minio, vault or
	// postgresql.
	Dependency string `json:"dependency,omitempty"`
	// Errors names each field of the request that is wrong (RFC 9457
	// extension member): a JSON pointer into the body and what was
	// expected.
	Errors []kho.FieldError `json:"errors,omitempty"`
}

// statusOf maps error codes to HTTP statuses; the one place that does.
func statusOf(code string) int {
	switch code {
	case kho.EINVALID:
		return http.StatusBadRequest
	case kho.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case kho.EFORBIDDEN:
		return http.StatusForbidden
	case kho.ENOTFOUND:
		return http.StatusNotFound
	case kho.ECONFLICT:
		return http.StatusConflict
	case kho.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case kho.ETOOMANY:
		return http.StatusTooManyRequests
	case kho.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case kho.EINTEGRITY:
		// Not the caller's fault, and not to be retried blindly.
		return http.StatusInternalServerError
	default:
		return http.StatusInternalServerError
	}
}

// writeError answers with the problem for err and logs the full chain under
// the request's id.
func writeError(c *gin.Context, err error) {
	code := kho.ErrorCode(err)
	writeProblem(c, statusOf(code), code, err)
}

// writeProblem answers with status for err, whose code is code.
func writeProblem(c *gin.Context, status int, code string, err error) {
	// The path may carry identifiers (a subject's, say): the problem names
	// the route instead.
	p := Problem{
		Type:      "urn:kho:problem:" + code,
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    kho.ErrorMessage(err),
		Instance:  c.FullPath(),
		Code:      code,
		Reason:    kho.ErrorReason(err),
		RequestID: requestID(c),
		Errors:    kho.ErrorFields(err),
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="kho"`)
	}
	if status == http.StatusServiceUnavailable {
		p.Dependency = dependencyOf(err)
		if c.Writer.Header().Get("Retry-After") == "" {
			c.Header("Retry-After", "5")
		}
	}
	_ = c.Error(err)
	// Only successes are kept and replayed: a problem never is one.
	c.Writer.Header().Del("Idempotent-Replayed")
	drainBody(c, status)
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(status, p)
}

// Refusals are sent after what is left of the request's body is read, up
// to drainLimit and for at most drainTime: a client still sending a body
// kho closed the connection on gets a reset, not the answer. Past those
// bounds the answer closes the connection. A client that asked "Expect:
// 100-continue" is told to continue when its body is first read: until
// then it has sent nothing more.
const (
	drainLimit = 8 << 20
	drainTime  = 2 * time.Second
)

func drainBody(c *gin.Context, status int) {
	r := c.Request
	limit := int64(drainLimit)
	if _, known := kho.FromContext(r.Context()); !known || status == http.StatusUnauthorized {
		// No more for a caller kho does not know than Go's server reads.
		limit = 256 << 10
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	if expectsContinue(r) && !bodyWasRead(c) {
		return
	}
	// A slow sender is answered when the deadline passes; the server then
	// closes the connection.
	_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(drainTime))
	_, _ = io.CopyN(io.Discard, r.Body, limit)
}

// expectsContinue reports what Go's server does: whether 100-continue is
// among the tokens of the request's Expect header.
func expectsContinue(r *http.Request) bool {
	for _, t := range strings.Split(r.Header.Get("Expect"), ",") {
		if strings.EqualFold(strings.TrimSpace(t), "100-continue") {
			return true
		}
	}
	return false
}

// trackedBody notes whether a request's body was ever read.
type trackedBody struct {
	io.ReadCloser
	read bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read = true
	return b.ReadCloser.Read(p)
}

const ctxBody = "kho.body"

// withBodyTracking lets drainBody know whether a body was read, and so
// whether a client that asked to be told to continue was.
func withBodyTracking() gin.HandlerFunc {
	return func(c *gin.Context) {
		if b := c.Request.Body; b != nil && b != http.NoBody {
			t := &trackedBody{ReadCloser: b}
			c.Request.Body = t
			c.Set(ctxBody, t)
		}
		c.Next()
	}
}

func bodyWasRead(c *gin.Context) bool {
	t, ok := c.Get(ctxBody)
	if !ok {
		return true // untracked: drain, rather than risk a reset
	}
	return t.(*trackedBody).read
}

// errorf answers with a problem made from a code and a safe message.
func errorf(c *gin.Context, code, format string, args ...any) {
	writeError(c, kho.Errorf(code, format, args...))
}

// isClientError reports whether err is the caller's fault (4xx).
func isClientError(err error) bool {
	var e *kho.Error
	return errors.As(err, &e) && statusOf(e.Code) < 500
}

// dependencyOf names the server behind an outage: the one an adapter
// named, else PostgreSQL when the chain holds a driver error.
func dependencyOf(err error) string {
	if d := kho.ErrorDependency(err); d != "" {
		return d
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if t := reflect.TypeOf(e).String(); strings.Contains(t, "pgconn.") || strings.Contains(t, "pgx.") || strings.Contains(t, "pgxpool.") {
			return kho.DependencyPostgreSQL
		}
	}
	return ""
}
