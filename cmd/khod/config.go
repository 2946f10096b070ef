package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"kho"
	"kho/storage"
	"kho/vault"
)

// Config is everything khod needs. Each field is an option that can be given
// as a flag (--database-url), an environment variable (KHO_DATABASE_URL) or a
// key of the JSON config file ("database-url"), in that order of precedence.
type Config struct {
	ConfigFile string

	Listen          string
	Mode            string
	LogLevel        string
	ShutdownTimeout time.Duration

	DatabaseURL     string
	DatabaseReadURL string
	DatabaseSchema  string
	MigrateOnStart  bool

	MinIOEndpoint      string
	MinIOAccessKey     string
	MinIOSecretKey     string
	MinIOSecretKeyFile string
	MinIOBucket        string

	VaultAddr         string
	VaultRoleID       string
	VaultSecretID     string
	VaultSecretIDFile string
	VaultAppRoleMount string

	Audience       string
	TrustedIssuers issuerList
	IssuerKinds    issuerList
	DevIdPKey      string
	TrustedProxies stringList

	MetricsListen string
	PprofListen   string

	ControllerName    string
	ControllerContact string
	ReceiptIssuer     string

	RateLimit      float64
	RateBurst      int
	MaxInMemory    int
	MaxLegalHold   time.Duration
	RequestTimeout time.Duration
	UploadTimeout  time.Duration

	UploadPartSize    uint64
	MaxDocumentSize   int64
	MaxPDFSize        int64
	ReconcileInterval time.Duration
	ReconcileGrace    time.Duration

	TSA        string
	PAdESLevel string
	PublicURL  string
	Delivery   string
	// The portal's identity provider (authorization code with PKCE).
	OIDCAuthorizeURL string
	OIDCTokenURL     string
	OIDCClientID     string
	TokenTTL         time.Duration
	TSARoots         stringList
	VisibleStamp     bool

	AuditOrigin        string
	AuditKey           string
	CheckpointInterval time.Duration
	CheckpointEvents   int
}

// Modes khod runs in.
const (
	ModeProduction = "production"
	ModeDev        = "dev"
)

// stringList is a repeatable option of plain values.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// issuerList is the repeatable --trusted-issuer ISSUER=JWKS_URL option.
type issuerList []string

func (l *issuerList) String() string { return strings.Join(*l, ",") }

func (l *issuerList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		iss, jwks, ok := strings.Cut(part, "=")
		if !ok || iss == "" || jwks == "" {
			return fmt.Errorf("want ISSUER=JWKS_URL, got %q", part)
		}
		*l = append(*l, part)
	}
	return nil
}

func newFlagSet(cfg *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("khod", flag.ContinueOnError)
	fs.StringVar(&cfg.ConfigFile, "config", "", "JSON `file` of options (keys are the option names without dashes in front)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8480", "`address` to serve HTTP on")
	fs.StringVar(&cfg.Mode, "mode", ModeProduction, "production or dev; only dev allows the built-in identity provider")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish on SIGTERM")

	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL `URL` (postgres://user:pass@host:port/db) [required]")
	fs.StringVar(&cfg.DatabaseReadURL, "database-read-url", "", "a streaming read replica's PostgreSQL `URL`: the access log and audit search read from it (they fall back to the primary when it fails); empty: everything on --database-url")
	fs.StringVar(&cfg.DatabaseSchema, "database-schema", "public", "PostgreSQL `schema` holding kho's tables")
	fs.BoolVar(&cfg.MigrateOnStart, "migrate-on-start", false, "apply pending migrations before serving (otherwise /readyz fails until `kho migrate` runs)")

	fs.StringVar(&cfg.MinIOEndpoint, "minio-endpoint", "", "MinIO `host:port` or http(s) URL [required]")
	fs.StringVar(&cfg.MinIOAccessKey, "minio-access-key", "", "khod's own MinIO access key, limited to its bucket [required]")
	fs.StringVar(&cfg.MinIOSecretKey, "minio-secret-key", "", "khod's MinIO secret key (prefer --minio-secret-key-file)")
	fs.StringVar(&cfg.MinIOSecretKeyFile, "minio-secret-key-file", "", "`file` holding khod's MinIO secret key")
	fs.StringVar(&cfg.MinIOBucket, "minio-bucket", "kho-documents", "`bucket` for document ciphertext")

	fs.StringVar(&cfg.VaultAddr, "vault-addr", "", "Vault `URL`, e.g. http://127.0.0.1:8200 [required]")
	fs.StringVar(&cfg.VaultRoleID, "vault-role-id", "", "AppRole role_id khod logs in with [required]")
	fs.StringVar(&cfg.VaultSecretID, "vault-secret-id", "", "AppRole secret_id (prefer --vault-secret-id-file)")
	fs.StringVar(&cfg.VaultSecretIDFile, "vault-secret-id-file", "", "`file` holding the AppRole secret_id")
	fs.StringVar(&cfg.VaultAppRoleMount, "vault-approle-mount", "approle", "`path` the AppRole auth method is mounted at")

	fs.StringVar(&cfg.Audience, "audience", "kho", "aud claim bearer tokens must carry")
	fs.Var(&cfg.TrustedIssuers, "trusted-issuer", "trust tokens from `ISSUER=JWKS_URL` (repeatable; the JWKS URL must be https outside --mode=dev)")
	fs.Var(&cfg.IssuerKinds, "issuer-kinds", "`ISSUER=KIND+KIND...`: the principal kinds a trusted issuer may assert (citizen, business_rep, agency, agency_officer, security_officer, operator); required for each --trusted-issuer")
	fs.Var(&cfg.TrustedProxies, "trusted-proxy", "`address or CIDR` of a load balancer whose X-Forwarded-For is believed (repeatable; default none)")
	fs.StringVar(&cfg.ControllerName, "controller-name", "kho (mẫu / sample deployment)", "the controller named in consent receipts (the body answering for the processing)")
	fs.StringVar(&cfg.ControllerContact, "controller-contact", "dpo@kho.invalid", "how a person reaches the controller, named in consent receipts")
	fs.StringVar(&cfg.ReceiptIssuer, "receipt-issuer", "urn:kho:consent", "the iss claim of consent receipts (the portal's URL, say)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "127.0.0.1:9480", "`address` to serve Prometheus metrics on, apart from the API (empty: none)")
	fs.StringVar(&cfg.PprofListen, "pprof-listen", "", "`address` to serve Go profiles (/debug/pprof/) on; only with --mode=dev (empty: none)")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 50, "requests per second each caller may make (then 429 with Retry-After)")
	fs.IntVar(&cfg.RateBurst, "rate-burst", 100, "requests a caller may make at once above --rate-limit")
	fs.IntVar(&cfg.MaxInMemory, "max-in-memory", 4, "documents checked in memory at once (PDF, JSON, XML deposits; PDF verifications, each); past it, 503")
	fs.DurationVar(&cfg.MaxLegalHold, "max-legal-hold", 5*365*24*time.Hour, "longest a legal hold may last")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 30*time.Second, "time to read a request and write its answer, on routes that move no document")
	fs.DurationVar(&cfg.UploadTimeout, "transfer-timeout", time.Hour, "time to read or write a document (deposits, downloads)")
	fs.StringVar(&cfg.DevIdPKey, "dev-idp-key", "", "dev identity provider key `file`; only with --mode=dev")

	fs.Uint64Var(&cfg.UploadPartSize, "upload-part-size", 8<<20, "`bytes` of each part buffered per upload to MinIO (at least 5 MiB); memory per concurrent upload")
	fs.Int64Var(&cfg.MaxDocumentSize, "max-document-size", 2<<30, "largest document accepted, in `bytes` (streams: memory does not grow with it)")
	fs.Int64Var(&cfg.MaxPDFSize, "max-pdf-size", 64<<20, "largest PDF accepted, in `bytes` (a PDF is held in memory to be checked)")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", 10*time.Minute, "how often to remove objects no document refers to (0 disables)")
	fs.DurationVar(&cfg.ReconcileGrace, "reconcile-grace", time.Hour, "age below which an unreferenced object is left alone (must outlast the longest upload)")
	fs.StringVar(&cfg.TSA, "tsa-url", "", "RFC 3161 timestamp authority `URL`: PDF signatures become PAdES B-T (default: B-B)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "khod's public base `URL` (https://kho.example.vn): the issuer of agencies' access tokens and the audience of their client assertions at /oauth/token (default in dev mode: http://<listen>; without it in production the token endpoint is off)")
	fs.StringVar(&cfg.Delivery, "delivery", "", "how fetches by other agencies are delivered: `jwe` (encrypted to the agency's registered key) or plain (default: jwe in production, plain in dev, where an agency may still ask with Accept: application/jose)")
	fs.StringVar(&cfg.OIDCAuthorizeURL, "oidc-authorize-url", "", "the portal's identity provider: its authorization endpoint `URL` (with --oidc-token-url and --oidc-client-id; in dev mode the built-in provider's; without them in production the portal is off)")
	fs.StringVar(&cfg.OIDCTokenURL, "oidc-token-url", "", "the portal's identity provider: its token endpoint `URL`")
	fs.StringVar(&cfg.OIDCClientID, "oidc-client-id", "", "the portal's client id at the identity provider (a public client using PKCE)")
	fs.DurationVar(&cfg.TokenTTL, "agency-token-ttl", 5*time.Minute, "life of the access tokens /oauth/token issues to agencies' systems (1m to 1h)")
	fs.StringVar(&cfg.PAdESLevel, "pades-level", "", "PAdES baseline `level` of PDF signatures: B-B, B-T, B-LT (with a DSS of certificates and CRLs for offline validation) or B-LTA (and a document timestamp); all but B-B need --tsa-url (default: B-T with --tsa-url, else B-B)")
	fs.Var(&cfg.TSARoots, "tsa-root", "PEM `file` of a timestamp authority root whose tokens prove when a PDF signature existed (repeatable); without one, signers' chains are judged at the current time")
	fs.BoolVar(&cfg.VisibleStamp, "visible-stamp", true, "add a visible signature stamp top-right of page 1 of signed PDFs")
	fs.StringVar(&cfg.AuditOrigin, "audit-origin", "kho.local/audit", "name of the audit log in its signed checkpoints (C2SP tlog-checkpoint origin)")
	fs.StringVar(&cfg.AuditKey, "audit-key", "audit-checkpoint", "Ed25519 Transit key (on kho-signing) that signs audit checkpoints")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", 10*time.Second, "sign a checkpoint at least this often when new audit events arrived")
	fs.IntVar(&cfg.CheckpointEvents, "checkpoint-events", 1000, "sign a checkpoint as soon as this many audit events arrived")
	return fs
}

// envName maps an option name to its environment variable.
func envName(flagName string) string {
	return "KHO_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// LoadConfig reads args, then the environment, then the config file, each
// filling only the options the ones before left unset, and validates the
// result. getenv is os.Getenv outside tests.
func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (*Config, error) {
	cfg := &Config{}
	fs := newFlagSet(cfg)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, usage)
			return nil, err
		}
		return nil, fmt.Errorf("%v (khod -h lists the options)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (khod takes options only; khod -h lists them)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range flagNames(fs) {
		if set[name] {
			continue
		}
		if v := getenv(envName(name)); v != "" {
			if err := fs.Set(name, v); err != nil {
				return nil, fmt.Errorf("environment %s: %v", envName(name), err)
			}
			set[name] = true
		}
	}
	if cfg.ConfigFile != "" {
		if err := applyFile(fs, cfg.ConfigFile, set); err != nil {
			return nil, err
		}
	}
	if err := cfg.resolveSecrets(); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// applyFile sets, from a JSON object, the options not already set.
func applyFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config file %s is not a JSON object: %v", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fs.Lookup(k) == nil || k == "config" {
			return fmt.Errorf("config file %s: unknown option %q (khod -h lists the options)", path, k)
		}
		if set[k] {
			continue
		}
		var values []string
		var s string
		var arr []string
		switch {
		case json.Unmarshal(m[k], &s) == nil:
			values = []string{s}
		case json.Unmarshal(m[k], &arr) == nil:
			values = arr
		default:
			// numbers and booleans: their JSON text is the flag's text.
			values = []string{string(m[k])}
		}
		for _, v := range values {
			if err := fs.Set(k, v); err != nil {
				return fmt.Errorf("config file %s: option %q: %v", path, k, err)
			}
		}
	}
	return nil
}

// resolveSecrets reads secrets given as files, refusing both forms at once.
func (c *Config) resolveSecrets() error {
	read := func(name, inline, file string) (string, error) {
		if file == "" {
			return inline, nil
		}
		if inline != "" {
			return "", fmt.Errorf("give either --%s or --%s-file, not both", name, name)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--%s-file: %v", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var err error
	if c.MinIOSecretKey, err = read("minio-secret-key", c.MinIOSecretKey, c.MinIOSecretKeyFile); err != nil {
		return err
	}
	c.VaultSecretID, err = read("vault-secret-id", c.VaultSecretID, c.VaultSecretIDFile)
	return err
}

// Validate checks every option without reaching any server.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q is not host:port", c.Listen)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q is not host:port", c.MetricsListen)
		}
		if c.MetricsListen == c.Listen {
			return errors.New("--metrics-listen must differ from --listen: metrics stay off the public port")
		}
	}
	switch c.Mode {
	case ModeProduction, ModeDev:
	default:
		return fmt.Errorf("--mode must be production or dev, not %q", c.Mode)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("--shutdown-timeout must be positive")
	}
	if c.DatabaseURL == "" {
		return errors.New("--database-url (KHO_DATABASE_URL) is required")
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return errors.New("--database-url must be a postgres://user:password@host:port/database URL")
	}
	if c.DatabaseReadURL != "" {
		if u, err := url.Parse(c.DatabaseReadURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return errors.New("--database-read-url must be a postgres://user:password@host:port/database URL")
		}
	}
	if c.MinIOEndpoint == "" {
		return errors.New("--minio-endpoint (KHO_MINIO_ENDPOINT) is required")
	}
	if _, _, err := storage.ParseEndpoint(c.MinIOEndpoint); err != nil {
		return fmt.Errorf("--minio-endpoint: %v", err)
	}
	if c.MinIOAccessKey == "" || c.MinIOSecretKey == "" {
		return errors.New("--minio-access-key and --minio-secret-key(-file) are required")
	}
	if c.VaultAddr == "" {
		return errors.New("--vault-addr (KHO_VAULT_ADDR) is required")
	}
	if err := vault.ValidateAddress(c.VaultAddr); err != nil {
		return fmt.Errorf("--vault-addr: %s", kho.ErrorMessage(err))
	}
	if c.VaultRoleID == "" || c.VaultSecretID == "" {
		return errors.New("--vault-role-id and --vault-secret-id(-file) are required: khod logs in to Vault with AppRole only")
	}
	if c.Audience == "" {
		return errors.New("--audience must not be empty")
	}
	kinds, err := c.issuerKinds()
	if err != nil {
		return err
	}
	for _, is := range c.TrustedIssuers {
		iss, jwks, _ := strings.Cut(is, "=")
		u, err := url.Parse(jwks)
		if err != nil || u.Host == "" || !(u.Scheme == "https" || (u.Scheme == "http" && c.Mode == ModeDev)) {
			return fmt.Errorf("--trusted-issuer %q: the JWKS URL must be an https URL (plain http only with --mode=dev)", is)
		}
		if len(kinds[iss]) == 0 {
			return fmt.Errorf("--trusted-issuer %q: say which principal kinds it may assert with --issuer-kinds %s=KIND+KIND", iss, iss)
		}
	}
	for iss := range kinds {
		found := false
		for _, is := range c.TrustedIssuers {
			found = found || strings.HasPrefix(is, iss+"=")
		}
		if !found {
			return fmt.Errorf("--issuer-kinds names %q, which is not a --trusted-issuer", iss)
		}
	}
	if c.UploadPartSize < 5<<20 || c.UploadPartSize > 512<<20 {
		return errors.New("--upload-part-size must be between 5 MiB and 512 MiB")
	}
	if c.MaxDocumentSize < 1 || c.MaxPDFSize < 1 || c.MaxPDFSize > c.MaxDocumentSize {
		return errors.New("--max-document-size and --max-pdf-size must be positive, and the PDF limit at most the document limit")
	}
	if c.ReconcileInterval < 0 || c.ReconcileGrace < time.Minute {
		return errors.New("--reconcile-interval must not be negative and --reconcile-grace must be at least 1m")
	}
	if c.TSA != "" {
		if u, err := url.Parse(c.TSA); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("--tsa-url must be an http(s) URL")
		}
	}
	if c.PublicURL == "" && c.Mode == ModeDev {
		c.PublicURL = "http://" + c.Listen
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || u.Host == "" || u.Path != "" && u.Path != "/" || !(u.Scheme == "https" || (u.Scheme == "http" && c.Mode == ModeDev)) {
			return errors.New("--public-url must be an https URL with no path (plain http only in dev mode)")
		}
		c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	}
	switch c.Delivery {
	case "":
		c.Delivery = "plain"
		if c.Mode == ModeProduction {
			c.Delivery = "jwe"
		}
	case "plain", "jwe":
	default:
		return fmt.Errorf("--delivery must be jwe or plain, not %q", c.Delivery)
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > time.Hour {
		return errors.New("--agency-token-ttl must be between 1m and 1h")
	}
	switch c.PAdESLevel {
	case "", "B-B":
	case "B-T", "B-LT", "B-LTA":
		if c.TSA == "" {
			return fmt.Errorf("--pades-level %s needs --tsa-url", c.PAdESLevel)
		}
	default:
		return fmt.Errorf("--pades-level must be B-B, B-T, B-LT or B-LTA, not %q", c.PAdESLevel)
	}
	if c.AuditOrigin == "" || strings.ContainsAny(c.AuditOrigin, " \n\r") {
		return errors.New("--audit-origin must be one word such as kho.gov.vn/audit")
	}
	if strings.TrimSpace(c.ControllerName) == "" || strings.TrimSpace(c.ControllerContact) == "" || strings.TrimSpace(c.ReceiptIssuer) == "" {
		return errors.New("--controller-name, --controller-contact and --receipt-issuer must not be empty: consent receipts name them")
	}
	if c.RateLimit <= 0 || c.RateBurst < 1 || c.MaxInMemory < 1 {
		return errors.New("--rate-limit, --rate-burst and --max-in-memory must be positive")
	}
	if c.MaxLegalHold < 24*time.Hour || c.RequestTimeout < time.Second || c.UploadTimeout < time.Minute {
		return errors.New("--max-legal-hold must be at least 24h, --request-timeout at least 1s and --transfer-timeout at least 1m")
	}
	if c.CheckpointInterval < time.Second || c.CheckpointEvents < 1 {
		return errors.New("--checkpoint-interval must be at least 1s and --checkpoint-events at least 1")
	}
	if c.PprofListen != "" && c.Mode != ModeDev {
		return errors.New("--pprof-listen: profiles are served only in --mode=dev")
	}
	if c.DevIdPKey != "" && c.Mode != ModeDev {
		return errors.New("--dev-idp-key: the built-in dev identity provider is refused outside --mode=dev")
	}
	if len(c.TrustedIssuers) == 0 && c.DevIdPKey == "" {
		return errors.New("no token issuer is trusted: give --trusted-issuer (or, in --mode=dev, --dev-idp-key)")
	}
	return nil
}

// issuerKinds reads --issuer-kinds into issuer → kinds.
func (c *Config) issuerKinds() (map[string][]kho.PrincipalKind, error) {
	out := map[string][]kho.PrincipalKind{}
	for _, v := range c.IssuerKinds {
		iss, list, _ := strings.Cut(v, "=")
		for _, k := range strings.Split(list, "+") {
			pk := kho.PrincipalKind(strings.TrimSpace(k))
			if !slices.Contains(kho.PrincipalKinds, pk) {
				return nil, fmt.Errorf("--issuer-kinds %q: unknown principal kind %q", v, k)
			}
			out[iss] = append(out[iss], pk)
		}
	}
	return out, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, `khod serves kho's API: the encrypted personal-data warehouse for public services.

Usage: khod [options]

Every option can also be set in the environment (--database-url as
KHO_DATABASE_URL) or in a JSON file given with --config ({"database-url": "..."}).
Flags win over the environment, which wins over the file. khod checks every
option and reaches PostgreSQL, MinIO and Vault before it serves; any problem
stops it with one line naming it.

Options:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
