package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"kho"
)

const (
	requestIDHeader = "X-Request-Id"
	requestIDKey    = "kho.request_id"
)

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

// withRequestID gives every request an id: the caller's X-Request-Id when it
// is a plain token (so ids can follow a request across systems), else a new
// UUIDv7. The id is echoed in the response and in every log line and problem.
func withRequestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(requestIDHeader)
		if !requestIDRE.MatchString(id) {
			id = uuid.Must(uuid.NewV7()).String()
		}
		c.Set(requestIDKey, id)
		c.Request = c.Request.WithContext(kho.WithRequestID(c.Request.Context(), id))
		c.Header(requestIDHeader, id)
		c.Next()
	}
}

func requestID(c *gin.Context) string { return c.GetString(requestIDKey) }

// withLogging writes one JSON line per request. It logs the route pattern,
// never the raw path or query (they can carry identifiers), and the
// principal through its LogValue (kind, agency, token id only).
func withLogging(log *slog.Logger, obs Observer) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		status := c.Writer.Status()
		obs.ObserveRequest(c.FullPath(), c.Request.Method, status, time.Since(start))
		if status >= 400 && len(c.Errors) > 0 {
			err := c.Errors.Last().Err
			obs.ObserveRefusal(c.FullPath(), kho.ErrorCode(err), kho.ErrorReason(err))
		}
		attrs := []any{
			"request_id", requestID(c),
			"method", c.Request.Method,
			"route", c.FullPath(),
			"status", status,
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
			"bytes_out", c.Writer.Size(),
		}
		if p, ok := kho.FromContext(c.Request.Context()); ok {
			attrs = append(attrs, "principal", p)
		}
		level := slog.LevelInfo
		if len(c.Errors) > 0 {
			err := c.Errors.Last().Err
			attrs = append(attrs, "err", err.Error())
			if !isClientError(err) {
				level = slog.LevelError
			}
		}
		log.Log(c.Request.Context(), level, "request", attrs...)
	}
}

// withRecovery turns a panic into a 500 problem and a log line with the
// request id, instead of a dropped connection.
func withRecovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					// A stream broken on purpose: let net/http drop the
					// connection.
					panic(r)
				}
				log.Error("panic serving request", "request_id", requestID(c), "route", c.FullPath(), "panic", fmt.Sprint(r))
				writeError(c, kho.Errorf(kho.EINTERNAL, "an internal error occurred"))
			}
		}()
		c.Next()
	}
}
