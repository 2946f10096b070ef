// Package metrics is khod's Prometheus instrumentation: requests by route
// pattern, calls to Vault, MinIO and PostgreSQL by operation, reuse
// decisions and refusals by stable reason, bytes deposited and served, the
// reconciler, and the state of the audit trail and the outbox read at
// scrape time.
//
// No label ever carries personal data or an identifier of a subject or a
// document: routes are patterns (/v1/documents/:id), Vault operations stop
// at the mount and verb (kho-subjects/decrypt, never the key name, which is
// a store's handle), MinIO operations are verbs, PostgreSQL operations are
// the statement's first keyword (BATCH for a pipelined batch), reasons come
// from a fixed list.
//
// Each Metrics has a registry of its own: nothing is global, so tests and
// several servers in one process do not share counters.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds khod's instruments and the registry they are served from.
type Metrics struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	outbound  *prometheus.CounterVec
	outLat    *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	reconcile *prometheus.CounterVec
	reclaimed prometheus.Counter
}

// New makes the instruments and registers them, with Go's runtime and the
// process's own collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kho_http_requests_total",
		Help: "HTTP requests by route pattern, method and status."}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kho_http_request_duration_seconds",
		Help: "Time to answer an HTTP request, to the last byte, by route pattern and method.", Buckets: buckets}, []string{"route", "method"})
	m.outbound = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kho_outbound_calls_total",
		Help: "Calls to Vault, MinIO and PostgreSQL by operation and outcome (ok, client_error, server_error, error)."}, []string{"dependency", "operation", "outcome"})
	m.outLat = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kho_outbound_call_duration_seconds",
		Help: "Time of a call to Vault, MinIO or PostgreSQL, by operation.", Buckets: buckets}, []string{"dependency", "operation"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kho_reuse_decisions_total",
		Help: "Fetches for a procedure by outcome (allowed, denied) and stable reason."}, []string{"outcome", "reason"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kho_http_refusals_total",
		Help: "Requests refused, by route pattern, error code and stable reason."}, []string{"route", "code", "reason"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kho_document_bytes_total",
		Help: "Document bytes deposited and served."}, []string{"direction"})
	m.reconcile = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kho_reconciler_runs_total",
		Help: "Runs of the reconciler by outcome."}, []string{"outcome"})
	m.reclaimed = prometheus.NewCounter(prometheus.CounterOpts{Name: "kho_reconciler_reclaimed_objects_total",
		Help: "Objects no document refers to, removed by the reconciler."})
	m.reg.MustRegister(m.requests, m.latency, m.outbound, m.outLat, m.decisions, m.refusals, m.bytes, m.reconcile, m.reclaimed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus's text format at /metrics, and
// nothing else.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	return mux
}

// methods are the HTTP methods counted by name; any other is "other", so a
// client cannot put a string of its own into a label.
var methods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodOptions: true,
}

func method(m string) string {
	if methods[m] {
		return m
	}
	return "other"
}

// ObserveRequest counts an HTTP request by route pattern ("" for a path no
// route matched), method and status.
func (m *Metrics) ObserveRequest(route, verb string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, method(verb), strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method(verb)).Observe(d.Seconds())
}

// ObserveRefusal counts a refused request by route pattern, error code and
// stable reason.
func (m *Metrics) ObserveRefusal(route, code, reason string) {
	if route == "" {
		route = "unmatched"
	}
	m.refusals.WithLabelValues(route, code, reason).Inc()
}

// ObserveDecision counts a fetch for a procedure: allowed, or denied with
// its stable reason.
func (m *Metrics) ObserveDecision(allowed bool, reason string) {
	outcome := "allowed"
	if !allowed {
		outcome = "denied"
	}
	m.decisions.WithLabelValues(outcome, reason).Inc()
}

// ObserveBytes counts document bytes: direction is "deposited" or "served".
func (m *Metrics) ObserveBytes(direction string, n int64) {
	if n > 0 {
		m.bytes.WithLabelValues(direction).Add(float64(n))
	}
}

// ObserveReconcile counts a reconciler run and what it removed.
func (m *Metrics) ObserveReconcile(reclaimed int, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.reconcile.WithLabelValues(outcome).Inc()
	m.reclaimed.Add(float64(reclaimed))
}

func (m *Metrics) outcall(dependency, operation, outcome string, d time.Duration) {
	m.outbound.WithLabelValues(dependency, operation, outcome).Inc()
	m.outLat.WithLabelValues(dependency, operation).Observe(d.Seconds())
}

// State is what the audit trail and the outbox look like now.
type State struct {
	AuditEvents    uint64    // events appended since the log began
	CheckpointSize uint64    // events the latest signed checkpoint covers
	CheckpointAt   time.Time // when it was signed (zero: none yet)
	OutboxBacklog  int64     // notifications not delivered yet
}

// WatchState reads the state at every scrape with read (bounded to 2 s;
// a failure leaves the gauges out of that scrape rather than wrong).
func (m *Metrics) WatchState(read func(context.Context) (State, error)) {
	m.reg.MustRegister(&stateCollector{read: read})
}

var (
	descAudit  = prometheus.NewDesc("kho_audit_events_total", "Events appended to the audit trail.", nil, nil)
	descSince  = prometheus.NewDesc("kho_audit_events_since_checkpoint", "Events not yet covered by a signed checkpoint.", nil, nil)
	descCpAge  = prometheus.NewDesc("kho_audit_checkpoint_age_seconds", "Age of the latest signed checkpoint.", nil, nil)
	descOutbox = prometheus.NewDesc("kho_outbox_backlog", "Notifications waiting to be delivered.", nil, nil)
)

type stateCollector struct {
	read func(context.Context) (State, error)
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAudit
	ch <- descSince
	ch <- descCpAge
	ch <- descOutbox
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.read(ctx)
	if err != nil {
		return // PostgreSQL is down: /readyz says so; the gauges sit this scrape out
	}
	ch <- prometheus.MustNewConstMetric(descAudit, prometheus.CounterValue, float64(st.AuditEvents))
	ch <- prometheus.MustNewConstMetric(descSince, prometheus.GaugeValue, float64(st.AuditEvents-min(st.CheckpointSize, st.AuditEvents)))
	age := 0.0
	if !st.CheckpointAt.IsZero() {
		age = time.Since(st.CheckpointAt).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descCpAge, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(st.OutboxBacklog))
}

// Transport wraps next (http.DefaultTransport when nil) so that each call
// to dependency is counted by the operation op names.
func (m *Metrics) Transport(dependency string, op func(*http.Request) string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{m: m, dep: dependency, op: op, next: next}
}

type transport struct {
	m    *Metrics
	dep  string
	op   func(*http.Request) string
	next http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "error"
	case resp.StatusCode >= 500:
		outcome = "server_error"
	case resp.StatusCode >= 400:
		outcome = "client_error"
	}
	t.m.outcall(t.dep, t.op(r), outcome, time.Since(start))
	return resp, err
}

// VaultOperation names a Vault call by its mount (or auth method) and verb:
// kho-subjects/decrypt, kho-signing/sign, auth/approle, sys/health. Key
// names, which are store handles, never appear.
func VaultOperation(r *http.Request) string {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	if len(parts) >= 2 {
		return parts[0] + "/" + parts[1]
	}
	return parts[0]
}

// MinIOOperation names a MinIO call by what it does: get, put, put_part,
// multipart (create or complete an upload), delete, head, list.
func MinIOOperation(r *http.Request) string {
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		if strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0 {
			return "list"
		}
		return "get"
	case http.MethodPut:
		if q.Has("partNumber") {
			return "put_part"
		}
		return "put"
	case http.MethodPost:
		return "multipart"
	case http.MethodDelete:
		return "delete"
	case http.MethodHead:
		return "head"
	}
	return strings.ToLower(r.Method)
}

// PostgresTracer counts PostgreSQL statements by their first keyword.
func (m *Metrics) PostgresTracer() pgx.QueryTracer { return &pgTracer{m: m} }

type pgTracer struct{ m *Metrics }

type pgStart struct {
	op    string
	start time.Time
}

type pgKey struct{}

func (t *pgTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, pgKey{}, pgStart{op: statement(data.SQL), start: time.Now()})
}

func (t *pgTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	s, ok := ctx.Value(pgKey{}).(pgStart)
	if !ok {
		return
	}
	outcome := "ok"
	if data.Err != nil && data.Err != pgx.ErrNoRows {
		outcome = "error"
	}
	t.m.outcall("postgres", s.op, outcome, time.Since(s.start))
}

// TraceBatchStart, TraceBatchQuery and TraceBatchEnd count a pipelined
// batch as one call ("BATCH"): one round trip, whatever it holds.
func (t *pgTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return context.WithValue(ctx, pgKey{}, pgStart{op: "BATCH", start: time.Now()})
}

func (t *pgTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *pgTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	s, ok := ctx.Value(pgKey{}).(pgStart)
	if !ok {
		return
	}
	outcome := "ok"
	if data.Err != nil {
		outcome = "error"
	}
	t.m.outcall("postgres", s.op, outcome, time.Since(s.start))
}

// statement returns a statement's first keyword, upper-cased.
func statement(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return "empty"
	}
	w := strings.ToUpper(f[0])
	switch w {
	case "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK", "SET", "CREATE", "ALTER", "DROP", "LOCK", "GRANT", "DO":
		return w
	}
	return "other"
}
