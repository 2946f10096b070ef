// Command khod is kho's server. It holds nothing durable: documents are in
// MinIO, keys in Vault, everything else in PostgreSQL, so any number of khod
// replicas can run behind a load balancer.
//
// khod -h documents every option.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/api"
	"kho/audit"
	"kho/breaker"
	"kho/consent"
	"kho/internal/devidp"
	"kho/metrics"
	"kho/oauth"
	"kho/outbox"
	"kho/policies"
	"kho/postgres"
	"kho/signing"
	"kho/storage"
	"kho/vault"
	"kho/web"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg, err := LoadConfig(os.Args[1:], os.Getenv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = run(ctx, cfg)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "khod: "+oneLine(err))
		os.Exit(1)
	}
}

// oneLine flattens an error chain (Vault's errors span several lines) so a
// failed start says what went wrong on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// run reaches every dependency, fails fast on the first that is missing, and
// serves until ctx ends.
func run(ctx context.Context, cfg *Config) error {
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", "khod")
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	m := metrics.New()
	// A frozen PostgreSQL fails a statement after 15 s without a byte, not
	// when the request's own deadline comes; after a run of such failures
	// its circuit answers at once.
	db, err := postgres.Open(startCtx, cfg.DatabaseURL, postgres.WithSchema(cfg.DatabaseSchema), postgres.WithTracer(m.PostgresTracer()),
		postgres.WithIdleTimeout(15*time.Second), postgres.WithBreaker(breaker.New(kho.DependencyPostgreSQL, breakerThreshold, breakerCooldown)))
	if err != nil {
		return err
	}
	defer db.Close()
	if cfg.MigrateOnStart {
		applied, err := db.Migrate(startCtx)
		if err != nil {
			return err
		}
		for _, m := range applied {
			log.Info("migration applied", "version", m.Version, "name", m.Name)
		}
	}
	st, err := db.Status(startCtx)
	if err != nil {
		return err
	}
	if !st.UpToDate() {
		log.Warn("database migrations pending; /readyz fails until `kho migrate` runs", "current", st.Current, "latest", st.Latest)
	}

	// A dead or frozen MinIO or Vault is answered at once (503) after a
	// run of failed calls, instead of each request waiting for its own
	// timeout; one probe call a cool-down tells when it is back.
	minioBreaker := breaker.New("minio", breakerThreshold, breakerCooldown)
	vaultBreaker := breaker.New("vault", breakerThreshold, breakerCooldown)
	blobs, err := storage.NewMinIO(storage.MinIOConfig{
		Endpoint: cfg.MinIOEndpoint, AccessKey: cfg.MinIOAccessKey, SecretKey: cfg.MinIOSecretKey, Bucket: cfg.MinIOBucket,
		PartSize: cfg.UploadPartSize,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return m.Transport("minio", metrics.MinIOOperation, minioBreaker.Transport(rt))
		},
	})
	if err != nil {
		return err
	}
	if err := blobs.Health(startCtx); err != nil {
		return fmt.Errorf("%w (endpoint %s)", err, cfg.MinIOEndpoint)
	}

	vc, err := vault.New(startCtx, vault.Config{
		Address: cfg.VaultAddr, RoleID: cfg.VaultRoleID, SecretID: cfg.VaultSecretID,
		AppRoleMount: cfg.VaultAppRoleMount, Logger: log.With("component", "vault"),
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return m.Transport("vault", metrics.VaultOperation, vaultBreaker.Transport(rt))
		},
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := vc.Close(); err != nil {
			log.Warn("vault token not revoked at shutdown", "err", err.Error())
		}
	}()

	transit, err := vault.NewTransit(vc)
	if err != nil {
		return err
	}
	engine, err := policies.DefaultEngine()
	if err != nil {
		return err
	}
	consents, err := consent.New(db, engine, transit,
		consent.WithController(consent.Controller{Name: cfg.ControllerName, Contact: cfg.ControllerContact}, cfg.ReceiptIssuer))
	if err != nil {
		return err
	}
	pdfSigner, err := signing.New(signing.Config{DB: db, Keys: transit, TSA: cfg.TSA, Level: cfg.PAdESLevel, Visible: cfg.VisibleStamp})
	if err != nil {
		return err
	}
	docs, err := storage.New(storage.Config{
		DB: db, Blobs: blobs, Keys: transit, Signer: transit, Logger: log.With("component", "storage"),
		MaxSize: cfg.MaxDocumentSize, MaxPDFSize: cfg.MaxPDFSize, Reuse: consents, PDFSigner: pdfSigner,
		MaxInMemory: cfg.MaxInMemory, MaxHold: cfg.MaxLegalHold, Consents: consents,
	})
	if err != nil {
		return err
	}
	signer, vkey, err := transit.NoteSigner(ctx, cfg.AuditKey, cfg.AuditOrigin)
	if err != nil {
		return err
	}
	trail, err := audit.NewLog(db, signer, vkey, cfg.AuditOrigin)
	if err != nil {
		return err
	}
	if cfg.DatabaseReadURL != "" {
		replica, err := postgres.Open(startCtx, cfg.DatabaseReadURL, postgres.WithSchema(cfg.DatabaseSchema), postgres.WithReadOnly(),
			postgres.WithTracer(m.PostgresTracer()), postgres.WithIdleTimeout(15*time.Second),
			postgres.WithBreaker(breaker.New(kho.DependencyPostgreSQL, breakerThreshold, breakerCooldown)))
		if err != nil {
			return fmt.Errorf("--database-read-url: %w", err)
		}
		defer replica.Close()
		trail.ReadFrom(replica)
	}
	go checkpointLoop(ctx, log, db, trail, cfg.CheckpointInterval, cfg.CheckpointEvents)
	if cfg.ReconcileInterval > 0 {
		go reconcileLoop(ctx, log, docs, m, cfg.ReconcileInterval, cfg.ReconcileGrace)
	}
	// The outbox reaches agencies' webhooks: signed events, at least once.
	dispatcher, err := outbox.New(outbox.Config{DB: db, Signer: transit, Key: consent.ReceiptKey, Issuer: cfg.ReceiptIssuer, AllowInternal: cfg.Mode == ModeDev})
	if err != nil {
		return err
	}

	var tsaRoots *x509.CertPool
	if len(cfg.TSARoots) > 0 {
		if tsaRoots, err = signing.LoadCertPool(cfg.TSARoots...); err != nil {
			return err
		}
	}
	issuers, devJWKS, err := trustedIssuers(cfg)
	if err != nil {
		return err
	}
	var tokens *oauth.Server
	if cfg.PublicURL != "" {
		// Agencies' systems trade signed client assertions for access
		// tokens kho signs; khod trusts those for agencies only.
		if tokens, err = oauth.New(oauth.Config{DB: db, Signer: transit, Key: oauth.KeyName, Issuer: cfg.PublicURL,
			Audiences: []string{cfg.PublicURL + "/oauth/token", cfg.PublicURL}, TokenAudience: cfg.Audience, TTL: cfg.TokenTTL}); err != nil {
			return err
		}
		keys, err := transit.JWKS(startCtx, oauth.KeyName)
		if err != nil {
			return err
		}
		for _, is := range issuers {
			if is.Issuer == cfg.PublicURL {
				return fmt.Errorf("--public-url %s is also a --trusted-issuer: kho's own tokens need an issuer of their own", cfg.PublicURL)
			}
		}
		issuers = append(issuers, api.IssuerConfig{Issuer: cfg.PublicURL, KeySet: keys, Kinds: []kho.PrincipalKind{kho.PrincipalAgency}})
	} else {
		log.Info("the token endpoint for agencies' systems is off: give --public-url to turn it on")
	}
	authn, err := api.NewAuthenticator(ctx, cfg.Audience, issuers)
	if err != nil {
		return err
	}
	portal, err := newPortal(cfg, log, db, authn, docs, consents, trail)
	if err != nil {
		return err
	}
	srv, err := api.New(api.Config{
		Logger:        log,
		Authenticator: authn,
		DevJWKS:       devJWKS,
		Version:       version,
		Documents:     docs,
		Audit:         trail,
		Consents:      consents,
		PDFVerifier: func(ctx context.Context, pdf []byte) (*signing.Report, error) {
			root, err := transit.RootCertificate(ctx)
			if err != nil {
				return nil, err
			}
			return signing.VerifyWith(pdf, signing.VerifyOptions{Root: root, TSARoots: tsaRoots})
		},
		PKIFiles:          transit.PKIFile,
		SigningKeys:       transit.PublishedJWKS,
		Tokens:            tokens,
		EncryptDeliveries: cfg.Delivery == "jwe",
		EncryptionKeys: func(ctx context.Context, a kho.AgencyCode) (jwk.Set, error) {
			return oauth.Keys(ctx, db, a, "enc")
		},
		Idempotency: &postgres.Idempotency{DB: db},
		SignReceiptPDF: func(ctx context.Context, pdf []byte) ([]byte, error) {
			return pdfSigner.Sign(ctx, pdf, signing.Options{Service: &signing.Service{Key: consent.ReceiptKey, Name: cfg.ControllerName},
				Reason: "Biên nhận đồng ý xử lý dữ liệu cá nhân / Consent receipt"})
		},
		ReceiptKeys:    func(ctx context.Context) (jwk.Set, error) { return transit.JWKS(ctx, consent.ReceiptKey) },
		MaxUploadSize:  cfg.MaxDocumentSize + 1<<20,
		Observer:       m,
		TrustedProxies: cfg.TrustedProxies,
		Portal:         portal,
		Limits: api.Limits{RequestsPerSecond: cfg.RateLimit, Burst: cfg.RateBurst, InMemory: cfg.MaxInMemory,
			RequestTimeout: cfg.RequestTimeout, TransferTimeout: cfg.UploadTimeout},
		Checks: []api.Check{
			{Name: "postgres", Check: func(ctx context.Context) error {
				if err := db.Health(ctx); err != nil {
					return err
				}
				st, err := db.Status(ctx)
				if err != nil {
					return err
				}
				if !st.UpToDate() {
					return kho.Errorf(kho.EUNAVAILABLE, "database at migration %d of %d; run kho migrate", st.Current, st.Latest)
				}
				return nil
			}},
			{Name: "minio", Check: blobs.Health},
			{Name: "vault", Check: vc.Health},
		},
	})
	if err != nil {
		return err
	}

	go srv.Run(ctx)
	go dispatcher.Run(ctx, 5*time.Second, func(err error) {
		// Quiet until the schema is migrated: readiness says so already.
		if st, serr := db.Status(ctx); serr == nil && st.UpToDate() {
			log.Warn("outbox", "err", kho.ErrorMessage(err))
		}
	})
	m.WatchState(func(ctx context.Context) (metrics.State, error) { return readState(ctx, db) })
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (--metrics-listen): %w", cfg.MetricsListen, err)
		}
		ms := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { _ = ms.Serve(mln) }()
		go func() {
			<-ctx.Done()
			_ = ms.Close()
		}()
		log.Info("metrics serving", "addr", mln.Addr().String())
	}

	if cfg.PprofListen != "" {
		pln, err := net.Listen("tcp", cfg.PprofListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (--pprof-listen): %w", cfg.PprofListen, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		ps := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = ps.Serve(pln) }()
		go func() {
			<-ctx.Done()
			_ = ps.Close()
		}()
		log.Info("profiles serving (dev mode)", "addr", pln.Addr().String())
	}

	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Backstops; each request gets its own deadlines from the API
		// (--request-timeout, or --transfer-timeout for documents).
		ReadTimeout:  cfg.UploadTimeout + time.Minute,
		WriteTimeout: cfg.UploadTimeout + time.Minute,
	}
	log.Info("khod serving", "addr", ln.Addr().String(), "mode", cfg.Mode, "version", version)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("khod shutting down", "grace", cfg.ShutdownTimeout.String())
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	srv.Close(sctx)
	log.Info("khod stopped")
	return nil
}

// reconcileLoop removes orphan objects every interval until ctx ends. Every
// replica runs it; an advisory lock lets one at a time do the work.
func reconcileLoop(ctx context.Context, log *slog.Logger, docs *storage.Service, m *metrics.Metrics, interval, grace time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := docs.Reconcile(ctx, grace)
			if ctx.Err() != nil {
				return
			}
			m.ObserveReconcile(n, err)
			if err != nil {
				log.Warn("reconciler failed; will retry", "err", err.Error())
			}
		}
	}
}

// checkpointLoop signs a checkpoint when checkpointEvents new events arrived
// or every interval when any did. Replicas may race; one checkpoint per size
// is kept.
func checkpointLoop(ctx context.Context, log *slog.Logger, db *postgres.DB, trail *audit.Log, interval time.Duration, events int) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last uint64
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var size uint64
		if err := db.Pool.QueryRow(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&size); err != nil {
			continue
		}
		if size == last || (size-last < uint64(events) && time.Since(lastAt) < interval) {
			continue
		}
		cp, err := trail.MakeCheckpoint(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("audit checkpoint failed; will retry", "err", err.Error())
			}
			continue
		}
		if cp != nil {
			last, lastAt = cp.Size, time.Now()
		}
	}
}

// readState reads what the metrics show of the audit trail and the outbox.
func readState(ctx context.Context, db *postgres.DB) (metrics.State, error) {
	var st metrics.State
	var cpAt *time.Time
	err := db.Pool.QueryRow(ctx, `SELECT (SELECT size FROM audit_head WHERE id = 1),
		coalesce((SELECT max(size) FROM audit_checkpoints), 0),
		(SELECT created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1),
		(SELECT count(*) FROM outbox WHERE delivered_at IS NULL)`).Scan(&st.AuditEvents, &st.CheckpointSize, &cpAt, &st.OutboxBacklog)
	if cpAt != nil {
		st.CheckpointAt = *cpAt
	}
	return st, err
}

// trustedIssuers builds the issuer list from the options; in dev mode it adds
// the built-in identity provider and returns its public keys to publish.
func trustedIssuers(cfg *Config) ([]api.IssuerConfig, jwk.Set, error) {
	kinds, err := cfg.issuerKinds()
	if err != nil {
		return nil, nil, err
	}
	var out []api.IssuerConfig
	for _, is := range cfg.TrustedIssuers {
		iss, jwks, _ := strings.Cut(is, "=")
		out = append(out, api.IssuerConfig{Issuer: iss, JWKSURL: jwks, Kinds: kinds[iss], AllowHTTP: cfg.Mode == ModeDev})
	}
	if cfg.DevIdPKey == "" {
		return out, nil, nil
	}
	if cfg.Mode != ModeDev {
		return nil, nil, errors.New("the built-in dev identity provider is refused outside --mode=dev")
	}
	idp, err := devidp.Load(cfg.DevIdPKey)
	if err != nil {
		return nil, nil, err
	}
	set, err := idp.PublicSet()
	if err != nil {
		return nil, nil, err
	}
	// The dev provider stands for every provider a deployment would have.
	return append(out, api.IssuerConfig{Issuer: devidp.Issuer, KeySet: set, Kinds: kho.PrincipalKinds}), set, nil
}

// newPortal builds the pages people use, signed in through the configured
// identity provider (in dev mode, the built-in one with its demo users);
// nil, with a log line, when none is configured.
func newPortal(cfg *Config, log *slog.Logger, db *postgres.DB, authn *api.Authenticator, docs api.Documents, consents api.Consents, trail api.Audit) (http.Handler, error) {
	oc := web.OIDC{AuthorizeURL: cfg.OIDCAuthorizeURL, TokenURL: cfg.OIDCTokenURL, ClientID: cfg.OIDCClientID}
	var dev *devidp.OIDC
	if cfg.Mode == ModeDev && cfg.DevIdPKey != "" && oc.AuthorizeURL == "" {
		idp, err := devidp.Load(cfg.DevIdPKey)
		if err != nil {
			return nil, err
		}
		oc = web.OIDC{AuthorizeURL: cfg.PublicURL + "/dev/idp/authorize", TokenURL: "http://" + cfg.Listen + "/dev/idp/token", ClientID: "kho-portal"}
		dev = &devidp.OIDC{IdP: idp, ClientID: oc.ClientID, Audience: cfg.Audience, TTL: time.Hour}
	}
	if oc.AuthorizeURL == "" || oc.TokenURL == "" || oc.ClientID == "" || cfg.PublicURL == "" {
		log.Info("the portal is off: give --public-url and --oidc-authorize-url, --oidc-token-url and --oidc-client-id to turn it on")
		return nil, nil
	}
	oc.RedirectURL = cfg.PublicURL + "/auth/callback"
	if dev != nil {
		dev.RedirectURI = oc.RedirectURL
	}
	return web.New(web.Config{Logger: log, DB: db, Authenticator: authn, Documents: docs, Consents: consents, Audit: trail,
		OIDC: oc, DevIdP: dev, SecureCookies: cfg.Mode != ModeDev})
}

// A dependency's circuit opens after this many consecutive failed calls and
// stays open this long before a probe.
const (
	breakerThreshold = 5
	breakerCooldown  = 3 * time.Second
)
