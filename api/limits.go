package api

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"kho"
	"kho/audit"
)

// Limits bound what one caller, and all callers together, can make khod do.
type Limits struct {
	// RequestsPerSecond and Burst bound each authenticated principal
	// (default 50/s, burst 100): past them, 429 with Retry-After.
	RequestsPerSecond float64
	Burst             int
	// FailureWindow is how long failed authentications from one source are
	// counted before their total is recorded (default 1 minute): the first
	// failure of a window is recorded at once, the rest as one count.
	// Past FailuresPerWindow (default 100) a source's failures answer 429
	// rather than 401; its valid tokens still pass.
	FailureWindow     time.Duration
	FailuresPerWindow int
	// InMemory bounds concurrent PDF verifications, each holding up to
	// 64 MiB (default 4): past it, 503.
	InMemory int
	// RequestTimeout bounds reading a request and writing its answer on
	// routes that move no document (default 30 s); TransferTimeout on those
	// that do (deposits, new versions, downloads; default 1 h).
	RequestTimeout  time.Duration
	TransferTimeout time.Duration
}

func (l *Limits) defaults() {
	if l.RequestsPerSecond == 0 {
		l.RequestsPerSecond = 50
	}
	if l.Burst == 0 {
		l.Burst = 100
	}
	if l.FailureWindow == 0 {
		l.FailureWindow = time.Minute
	}
	if l.FailuresPerWindow == 0 {
		l.FailuresPerWindow = 100
	}
	if l.InMemory == 0 {
		l.InMemory = 4
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = 30 * time.Second
	}
	if l.TransferTimeout == 0 {
		l.TransferTimeout = time.Hour
	}
}

// withSecurityHeaders marks every answer as personal and not to be kept,
// sniffed, framed or referred to; the few public routes loosen caching
// themselves.
func withSecurityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		c.Next()
	}
}

// transferRoutes move document bytes and get the longer deadline.
var transferRoutes = map[string]bool{
	"POST /v1/documents":                   true,
	"POST /v1/documents/:id/versions":      true,
	"GET /v1/documents/:id/content":        true,
	"POST /v1/pdf-signatures/verification": true,
	"GET /v1/audit/export":                 true,
}

// withDeadlines sets this request's read and write deadlines on the
// connection: a slow client cannot hold a connection open for long on a
// route that moves no document, and not forever on one that does.
func withDeadlines(l Limits) gin.HandlerFunc {
	return func(c *gin.Context) {
		d := l.RequestTimeout
		if transferRoutes[c.Request.Method+" "+c.FullPath()] {
			d = l.TransferTimeout
		}
		rc := http.NewResponseController(c.Writer)
		at := time.Now().Add(d)
		// Not every writer supports deadlines (tests' recorders): then the
		// server's own timeouts apply.
		_ = rc.SetReadDeadline(at)
		_ = rc.SetWriteDeadline(at)
		c.Next()
	}
}

// limiter keeps a token bucket per key, forgetting keys idle for a while.
type limiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

// allow takes a token for key, or says how long to wait for one.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// tooMany answers 429 with the seconds to wait.
func tooMany(c *gin.Context, wait time.Duration, msg string) {
	c.Header("Retry-After", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
	writeError(c, kho.Errorf(kho.ETOOMANY, "%s; retry after the time in Retry-After", msg))
}

// principalKey names the caller for rate limiting (never logged).
func principalKey(p kho.Principal) string {
	return string(p.Kind) + "|" + string(p.Agency) + "|" + string(p.Staff) + "|" + string(p.Person) + "|" + string(p.Business)
}

// withRateLimit bounds each principal's requests.
func withRateLimit(l *limiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, _ := kho.FromContext(c.Request.Context())
		if ok, wait := l.allow(principalKey(p), time.Now()); !ok {
			tooMany(c, wait, "too many requests from this caller")
			return
		}
		c.Next()
	}
}

// failures aggregates failed authentications per source (the client
// address), so a flood of bad tokens costs the audit trail one event per
// source per window, not one each, while the counts are kept.
type failures struct {
	mu      sync.Mutex
	window  time.Duration
	cap     int
	trail   Audit
	sources map[string]*failureWindow
}

type failureWindow struct {
	start time.Time
	count int
	route string
}

// maxSources bounds the memory the aggregation uses; past it, new sources
// share one window.
const maxSources = 10000

func newFailures(trail Audit, window time.Duration, cap int) *failures {
	return &failures{window: window, cap: cap, trail: trail, sources: map[string]*failureWindow{}}
}

// note counts a failure from source and says whether to record it now (the
// first of a window) and whether the source is over its allowance.
func (f *failures) note(source, route string, now time.Time) (record, over bool, flush []audit.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	flush = f.expired(now)
	w := f.sources[source]
	if w == nil {
		if len(f.sources) >= maxSources {
			source = "other"
			w = f.sources[source]
		}
		if w == nil {
			w = &failureWindow{start: now, route: route}
			f.sources[source] = w
			record = true
		}
	}
	w.count++
	return record, w.count > f.cap, flush
}

// expired removes windows that ended and returns the events summing them.
func (f *failures) expired(now time.Time) []audit.Event {
	var out []audit.Event
	for src, w := range f.sources {
		if now.Sub(w.start) < f.window {
			continue
		}
		delete(f.sources, src)
		if w.count > 1 {
			out = append(out, summary(w, now))
		}
	}
	return out
}

func summary(w *failureWindow, now time.Time) audit.Event {
	return audit.Event{Action: audit.AuthFailed, Outcome: audit.Denied, Reason: "repeated",
		Details: map[string]any{"count": w.count - 1, "since": w.start.UTC().Format(time.RFC3339), "until": now.UTC().Format(time.RFC3339), "route": w.route}}
}

// flushExpired records the counts of the windows that ended.
func (f *failures) flushExpired(ctx context.Context) {
	f.mu.Lock()
	evs := f.expired(time.Now())
	f.mu.Unlock()
	for _, ev := range evs {
		_ = f.trail.Record(ctx, ev)
	}
}

// Flush records the counts of every open window: at shutdown, so no count
// is lost.
func (f *failures) Flush(ctx context.Context) {
	f.mu.Lock()
	var evs []audit.Event
	now := time.Now()
	for src, w := range f.sources {
		delete(f.sources, src)
		if w.count > 1 {
			evs = append(evs, summary(w, now))
		}
	}
	f.mu.Unlock()
	for _, ev := range evs {
		_ = f.trail.Record(ctx, ev)
	}
}

// gate bounds concurrent work that holds much memory.
type gate chan struct{}

// enter waits up to two seconds for a slot; the caller must call the
// returned function when done.
func (g gate) enter(ctx context.Context) (func(), error) {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case g <- struct{}{}:
		return func() { <-g }, nil
	case <-t.C:
		return nil, kho.Errorf(kho.EUNAVAILABLE, "too many documents are being checked at once; try again shortly")
	case <-ctx.Done():
		return nil, kho.WrapError(kho.EUNAVAILABLE, "the request was cancelled", ctx.Err())
	}
}
