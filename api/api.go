// Package api is khod's HTTP surface: gin routes, the one authentication
// middleware, request ids, JSON access logs, and the mapping of kho error
// codes to application/problem+json answers.
//
// api imports the root package and is handed everything else (authenticator,
// readiness checks, services) by cmd/khod. It makes no authorization decision
// of its own beyond "is there a valid principal": those belong to policies
// and consent.
package api

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/oauth"
	"kho/signing"
	"kho/storage"
)

// Check is one dependency readiness probes look at.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config is what the server is built from.
type Config struct {
	Logger        *slog.Logger
	Authenticator *Authenticator
	// Checks run on every /readyz, concurrently, each bounded by CheckTimeout.
	Checks       []Check
	CheckTimeout time.Duration // default 2s
	// DevJWKS, when set, is published at /dev/idp/jwks.json. Only --mode=dev
	// sets it.
	DevJWKS jwk.Set
	Version string
	// Documents serves the document routes.
	Documents Documents
	// Audit is the audit trail: its routes, and where failed logins go.
	Audit Audit
	// Consents serves consent, availability and receipts; ReceiptKeys
	// publishes the receipt signing keys.
	Consents    Consents
	ReceiptKeys keysFunc
	// SigningKeys reads the public keys of a Transit signing key, all
	// versions; when set, GET /issuers/{code}/jwks.json publishes each
	// issuer's manifest keys, so a document's receiver checks the issuer's
	// signature without trusting kho.
	SigningKeys func(ctx context.Context, name string) (jwk.Set, error)
	// PDFVerifier checks the signatures inside a PDF against the deployment
	// root; optional.
	PDFVerifier func(ctx context.Context, pdf []byte) (*signing.Report, error)
	// SignReceiptPDF signs a printed consent receipt in kho's own name
	// (PAdES); without it /v1/consents/{id}/receipt.pdf answers 503.
	SignReceiptPDF func(ctx context.Context, pdf []byte) ([]byte, error)
	// EncryptDeliveries delivers every fetch for a procedure by another
	// agency as a JWE to the agency's registered encryption key (else only
	// when it asks with Accept: application/jose); EncryptionKeys reads
	// those keys.
	EncryptDeliveries bool
	EncryptionKeys    func(ctx context.Context, agency kho.AgencyCode) (jwk.Set, error)
	// Idempotency, when set, keeps the answers of writes sent with an
	// Idempotency-Key header (deposits, versions, consent writes).
	Idempotency Idempotency
	// Tokens, when set, is the OAuth token endpoint for agencies' systems
	// (POST /oauth/token).
	Tokens *oauth.Server
	// PKIFiles, when set, serves the CA certificates and revocation lists
	// that issued certificates point validators to (/pki/root.crt,
	// /pki/root.crl, /pki/ca.crt, /pki/ca.crl), DER encoded.
	PKIFiles func(ctx context.Context, name string) ([]byte, error)
	// MaxUploadSize bounds a deposit's whole multipart body (default 2 GiB
	// plus 1 MiB for the metadata and framing).
	MaxUploadSize int64
	// Limits bound each caller and the memory-heavy work of all.
	Limits Limits
	// Observer, when set, is told of every request, refusal, reuse
	// decision and document byte (metrics).
	Observer Observer
	// Portal, when set, serves every path that is not the API's: the
	// pages people use (package web).
	Portal http.Handler
	// TrustedProxies are the addresses (or CIDRs) of load balancers whose
	// X-Forwarded-For is believed; by default none, so a client cannot
	// pose as many sources to dodge the limits on failed logins.
	TrustedProxies []string
}

// Observer is told what the API does, with no personal data: route
// patterns, codes and stable reasons only. *metrics.Metrics meets it.
type Observer interface {
	ObserveRequest(route, method string, status int, d time.Duration)
	ObserveRefusal(route, code, reason string)
	ObserveDecision(allowed bool, reason string)
	ObserveBytes(direction string, n int64)
}

type noObserver struct{}

func (noObserver) ObserveRequest(string, string, int, time.Duration) {}
func (noObserver) ObserveRefusal(string, string, string)             {}
func (noObserver) ObserveDecision(bool, string)                      {}
func (noObserver) ObserveBytes(string, int64)                        {}

// Server routes kho's HTTP API.
type Server struct {
	cfg      Config
	engine   *gin.Engine
	failures *failures
	pdfGate  gate
	// deliveryGate bounds one-JWE deliveries made in memory, apart from
	// PDF checks: a citizen's PDFs never starve agencies' deliveries.
	deliveryGate gate
	// budget bounds the memory of bodies read whole, as they arrive.
	budget  storage.Budget
	issuers issuerCache
}

// issuerCache keeps issuers' published keys, and the absence of keys, for
// a few seconds.
type issuerCache struct {
	mu sync.Mutex
	m  map[string]issuerEntry
}

type issuerEntry struct {
	set jwk.Set // nil: the issuer has no keys
	at  time.Time
}

// New validates cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		return nil, kho.Errorf(kho.EINVALID, "api: a logger is required")
	}
	if cfg.Authenticator == nil {
		return nil, kho.Errorf(kho.EINVALID, "api: an authenticator is required")
	}
	for _, c := range cfg.Checks {
		if c.Name == "" || c.Check == nil {
			return nil, kho.Errorf(kho.EINVALID, "api: readiness checks need a name and a function")
		}
	}
	if cfg.Documents == nil || cfg.Audit == nil || cfg.Consents == nil || cfg.ReceiptKeys == nil {
		return nil, kho.Errorf(kho.EINVALID, "api: document, audit and consent services and receipt keys are required")
	}
	if cfg.MaxUploadSize == 0 {
		cfg.MaxUploadSize = 2<<30 + 1<<20
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	cfg.Limits.defaults()
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, kho.WrapError(kho.EINVALID, "api: trusted proxies", err)
	}
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(withRequestID(), withBodyTracking(), withSecurityHeaders(), withLogging(cfg.Logger, cfg.Observer), withRecovery(cfg.Logger), withDeadlines(cfg.Limits))
	e.NoRoute(func(c *gin.Context) {
		if cfg.Portal != nil && !isAPIPath(c.Request.URL.Path) {
			c.Status(http.StatusOK) // gin presets 404 for unrouted paths
			cfg.Portal.ServeHTTP(c.Writer, c.Request)
			return
		}
		errorf(c, kho.ENOTFOUND, "no such route")
	})
	e.NoMethod(func(c *gin.Context) {
		writeProblem(c, http.StatusMethodNotAllowed, kho.EINVALID, kho.Errorf(kho.EINVALID, "method not allowed on this route"))
	})
	s := &Server{cfg: cfg, engine: e, pdfGate: make(gate, cfg.Limits.InMemory), deliveryGate: make(gate, cfg.Limits.InMemory), budget: storage.NewBudget(cfg.Limits.InMemory * 64),
		failures: newFailures(cfg.Audit, cfg.Limits.FailureWindow, cfg.Limits.FailuresPerWindow)}

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.json", s.openapi)
	if cfg.PKIFiles != nil {
		e.GET("/pki/:file", s.pkiFile)
	}
	if cfg.SigningKeys != nil {
		// Public: limited per source address, and answered from a
		// short cache, so asking costs Vault little.
		ipLimit := newLimiter(cfg.Limits.RequestsPerSecond, cfg.Limits.Burst)
		e.GET("/issuers/:code/jwks.json", func(c *gin.Context) {
			if ok, wait := ipLimit.allow("ip:"+c.ClientIP(), time.Now()); !ok {
				tooMany(c, wait, "too many requests from this address")
				return
			}
		}, s.issuerKeys)
	}
	if cfg.Tokens != nil {
		e.POST("/oauth/token", s.token)
	}
	if cfg.DevJWKS != nil {
		e.GET("/dev/idp/jwks.json", func(c *gin.Context) { c.JSON(http.StatusOK, cfg.DevJWKS) })
	}

	v1 := e.Group("/v1", authenticate(cfg.Authenticator, cfg.Audit, s.failures),
		withRateLimit(newLimiter(cfg.Limits.RequestsPerSecond, cfg.Limits.Burst)), checkQuery())
	v1.GET("/me", s.me)
	s.documentRoutes(v1)
	s.auditRoutes(e, v1)
	s.consentRoutes(e, v1)
	if cfg.PDFVerifier != nil {
		v1.POST("/pdf-signatures/verification", s.verifyPDF)
	}
	return s, nil
}

// delegatingQueries are the routes that take ?on_behalf_of=; the others that
// act for someone else take it in their JSON body.
var delegatingQueries = map[string]bool{
	"GET /v1/me/documents": true, "GET /v1/me/legal-holds": true, "GET /v1/me/access-log": true,
	"GET /v1/me/consents": true, "GET /v1/consent-requests": true, "GET /v1/me/notifications": true,
}

// checkQuery refuses a query Go's parser would drop keys of (semicolons),
// values that are not plain text (which PostgreSQL would refuse as an
// outage), and an on_behalf_of where a route does not read it or that names
// no single store: a guardian acting for a ward must never be answered as
// themself.
func checkQuery() gin.HandlerFunc {
	return func(c *gin.Context) {
		for _, p := range c.Params {
			if p.Value == "" {
				// "/legal-holds//release": a path with a segment left out
				// names nothing.
				errorf(c, kho.ENOTFOUND, "no such route")
				return
			}
		}
		if _, err := url.ParseQuery(c.Request.URL.RawQuery); err != nil {
			errorf(c, kho.EINVALID, "the query string is malformed (use & between parameters)")
			return
		}
		q := c.Request.URL.Query()
		for name, values := range q {
			for _, v := range values {
				if !kho.PlainText(v, false) {
					writeError(c, kho.FieldErrorf(truncateQ(name), "the query parameter %q must be plain text (UTF-8, no control characters)", truncateQ(name)))
					return
				}
			}
		}
		if q.Has("on_behalf_of") && (len(q["on_behalf_of"]) != 1 || q.Get("on_behalf_of") == "") {
			errorf(c, kho.EINVALID, "on_behalf_of names exactly one store: give it once, with the identification number")
			return
		}
		if q.Has("on_behalf_of") && !delegatingQueries[c.Request.Method+" "+c.FullPath()] {
			errorf(c, kho.EINVALID, "this route does not take on_behalf_of in its query: acting for someone else is said in the JSON body where a route allows it, and a document or store in the path already names whose it is")
			return
		}
		c.Next()
	}
}

func truncateQ(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Handler returns the http.Handler serving every route.
func (s *Server) Handler() http.Handler { return s.engine }

// Routes lists every registered route as "METHOD /path/:param": the
// authorization matrix test checks it covers them all.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.engine.Routes() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

// Run records, every failure window, the counts of failed authentications
// whose window ended, until ctx ends: a count never waits for the next
// failure to be written.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Limits.FailureWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.failures.flushExpired(ctx)
		}
	}
}

// Close records what is still counted in memory (failed authentications)
// before the process ends.
func (s *Server) Close(ctx context.Context) { s.failures.Flush(ctx) }

// healthz answers as long as the process serves HTTP; it checks nothing else,
// so an orchestrator restarts khod only when khod itself is stuck.
func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok", "version": s.cfg.Version})
}

// CheckResult is one dependency's state in a readiness answer.
type CheckResult struct {
	Status string `json:"status"` // "ok" or "fail"
	Error  string `json:"error,omitempty"`
	TookMS int64  `json:"took_ms"`
}

// readyz checks every dependency now, concurrently, and answers 503 when any
// fails, so a load balancer stops sending traffic within one probe period.
func (s *Server) readyz(c *gin.Context) {
	results := make(map[string]CheckResult, len(s.cfg.Checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, chk := range s.cfg.Checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.CheckTimeout)
			defer cancel()
			start := time.Now()
			err := runCheck(ctx, chk)
			r := CheckResult{Status: "ok", TookMS: time.Since(start).Milliseconds()}
			if err != nil {
				r.Status, r.Error = "fail", kho.ErrorMessage(err)
				s.cfg.Logger.Warn("readiness check failed", "request_id", requestID(c), "check", chk.Name, "err", err.Error())
			}
			mu.Lock()
			results[chk.Name] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	status, code := "ok", http.StatusOK
	for _, r := range results {
		if r.Status != "ok" {
			status, code = "unavailable", http.StatusServiceUnavailable
		}
	}
	c.JSON(code, gin.H{"status": status, "checks": results})
}

// runCheck runs one check, turning a panic into a failure so one broken
// adapter cannot take the whole process down through its probe.
func runCheck(ctx context.Context, chk Check) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = kho.Errorf(kho.EINTERNAL, "check %s panicked", chk.Name)
		}
	}()
	return chk.Check(ctx)
}

// me tells callers who kho thinks they are: the quickest way to check a
// token. It answers with the caller's own identifiers only.
func (s *Server) me(c *gin.Context) {
	p, _ := kho.FromContext(c.Request.Context())
	out := gin.H{"kind": p.Kind, "issuer": p.Issuer, "token_id": p.TokenID, "expires_at": p.ExpiresAt.UTC()}
	if p.Person != "" {
		out["person"] = p.Person
	}
	if p.Business != "" {
		out["business"] = p.Business
	}
	if p.Agency != "" {
		out["agency"] = p.Agency
	}
	if p.Staff != "" {
		out["staff"] = p.Staff
	}
	if sub, ok := p.ActsFor(); ok {
		out["store_of"] = sub
	}
	c.JSON(http.StatusOK, out)
}

// verifyPDF reports on the signatures inside a PDF sent as the body
// (application/pdf, up to the PDF size limit): signer, integrity, chain to
// the deployment root, signing time, later revisions, timestamp.
func (s *Server) verifyPDF(c *gin.Context) {
	// The body is read first, against the memory budget as it arrives; the
	// slot for the check is taken once it is in, so a slow sender holds
	// no slot.
	b, done, err := s.budget.ReadAll(c.Request.Context(), c.Request.Body, 64<<20, "a PDF to verify")
	if err != nil {
		writeError(c, err)
		return
	}
	defer done()
	if !bytes.HasPrefix(b, []byte("%PDF-")) {
		errorf(c, kho.EINVALID, "the body is not a PDF")
		return
	}
	leave, err := s.pdfGate.enter(c.Request.Context())
	if err != nil {
		writeError(c, err)
		return
	}
	defer leave()
	rep, err := s.cfg.PDFVerifier(c.Request.Context(), b)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, rep)
}

// pkiFile serves a CA certificate or CRL to anyone: validators fetch them
// from the URLs written in kho's certificates.
func (s *Server) pkiFile(c *gin.Context) {
	name := c.Param("file")
	typ := "application/pkix-cert"
	if strings.HasSuffix(name, ".crl") {
		typ = "application/pkix-crl"
	}
	der, err := s.cfg.PKIFiles(c.Request.Context(), name)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, typ, der)
}

// issuerKeys publishes the keys an issuer signs its manifests with (every
// version, so old signatures still verify): an agency's by its code, kho's
// own for self-declared documents by "self-declared". Public, like any
// certificate an issuer publishes; an issuer without keys is 404.
func (s *Server) issuerKeys(c *gin.Context) {
	code := c.Param("code")
	name := kho.SelfDeclaredKey
	if code != "self-declared" {
		a := kho.AgencyCode(code)
		if err := a.Validate(); err != nil {
			writeError(c, err)
			return
		}
		name = kho.AgencySigningKey(a)
	}
	set, err := s.issuers.get(c.Request.Context(), name, s.cfg.SigningKeys)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Cache-Control", "public, max-age=10")
	c.JSON(http.StatusOK, set)
}

func (ic *issuerCache) get(ctx context.Context, name string, load func(context.Context, string) (jwk.Set, error)) (jwk.Set, error) {
	ic.mu.Lock()
	e, ok := ic.m[name]
	ic.mu.Unlock()
	ttl := 10 * time.Second // a rotated key is published within seconds
	if ok && e.set == nil {
		ttl = 2 * time.Second // an issuer's first key too
	}
	if !ok || time.Since(e.at) > ttl {
		set, err := load(ctx, name)
		if err != nil && kho.ErrorCode(err) != kho.ENOTFOUND {
			return nil, err
		}
		e = issuerEntry{set: set, at: time.Now()}
		ic.mu.Lock()
		if ic.m == nil || len(ic.m) >= 4096 {
			ic.m = map[string]issuerEntry{}
		}
		ic.m[name] = e
		ic.mu.Unlock()
	}
	if e.set == nil {
		return nil, kho.Errorf(kho.ENOTFOUND, "no such issuer, or it has signed nothing")
	}
	return e.set, nil
}

// apiPrefixes are the paths the API answers, with problem+json; the
// portal has the rest.
var apiPrefixes = []string{"/v1/", "/oauth/", "/pki/", "/issuers/", "/audit/", "/.well-known/", "/dev/idp/jwks.json", "/healthz", "/readyz", "/openapi.json"}

func isAPIPath(p string) bool {
	for _, pre := range apiPrefixes {
		if strings.HasPrefix(p, pre) || p == strings.TrimSuffix(pre, "/") {
			return true
		}
	}
	return false
}
