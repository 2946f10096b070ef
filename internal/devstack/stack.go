// Package devstack runs kho's dev stack on this machine: a real PostgreSQL,
// MinIO and Vault, on loopback ports, with their state in a git-ignored folder
// of the checkout (.kho/) and the servers built from Go modules cached outside
// it (~/.cache/kho/bin), so fresh clones on the same machine reuse them.
//
// It starts each server detached, records its pid in a pid file, and stops
// only what it started. It bootstraps them the way an operator would (kho
// init): khod's bucket and MinIO user, Vault's mounts, khod's policy and
// AppRole. Everything khod and the tests need is written to stack.json (0600).
package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stack is the dev stack of one checkout.
type Stack struct {
	RepoDir  string // the checkout (holds go.mod)
	StateDir string // RepoDir/.kho unless KHO_STATE_DIR says otherwise
	CacheDir string // ~/.cache/kho unless KHO_CACHE_DIR says otherwise
	Ports    Ports
	Out      io.Writer // progress lines
	Getenv   func(string) string
	// Cluster asks Up for the cluster profile (kho dev up --cluster). A
	// state folder keeps the profile it was made with.
	Cluster bool
	// KhoBinary is the kho command, which runs the cluster's fronts (kho
	// dev front); the running executable unless set.
	KhoBinary string
}

// Ports are the loopback ports the services listen on. The defaults (and
// the cluster's nodes that follow them) lie below the kernel's ephemeral
// range (32768 and up on Linux): a port in it can be held, at the moment a
// server starts or restarts, as the source port of any outgoing connection,
// and the server then fails with "address already in use".
type Ports struct {
	Postgres, MinIO, Vault, Khod int
}

// State is what up leaves for khod, the CLI and the tests: addresses and
// credentials. It holds secrets (root token, root passwords) and is written
// with mode 0600; khod is only ever given its own subset (KhodEnv).
type State struct {
	DatabaseURL      string `json:"database_url"`       // role kho: owns database kho; migrations, tests
	DatabaseAppURL   string `json:"database_app_url"`   // role kho_app: khod's, append-only on the audit trail
	DatabaseAdminURL string `json:"database_admin_url"` // superuser, when the stack runs PostgreSQL
	ManagedPostgres  bool   `json:"managed_postgres"`

	MinIOEndpoint     string `json:"minio_endpoint"`
	MinIORootUser     string `json:"minio_root_user"`
	MinIORootPassword string `json:"minio_root_password"`
	MinIOBucket       string `json:"minio_bucket"`
	MinIOAccessKey    string `json:"minio_access_key"` // khod's own user, limited to MinIOBucket
	MinIOSecretKey    string `json:"minio_secret_key"`
	MinIOBinary       string `json:"minio_binary"`

	VaultAddr      string `json:"vault_addr"`
	VaultRootToken string `json:"vault_root_token"`
	VaultUnsealKey string `json:"vault_unseal_key"`
	VaultRoleID    string `json:"vault_role_id"`
	VaultSecretID  string `json:"vault_secret_id"`
	VaultBinary    string `json:"vault_binary"`

	DevIdPKey  string `json:"dev_idp_key"`
	KhodListen string `json:"khod_listen"`

	// Cluster is set in a stack made by kho dev up --cluster; the
	// addresses above are then the fronts'.
	Cluster *ClusterState `json:"cluster,omitempty"`
}

// New locates the checkout from dir (walking up to kho's go.mod) and reads the
// KHO_* environment for folders and ports.
func New(dir string, getenv func(string) string, out io.Writer) (*Stack, error) {
	repo, err := FindRepo(dir)
	if err != nil {
		return nil, err
	}
	s := &Stack{RepoDir: repo, Out: out, Getenv: getenv}
	s.KhoBinary, _ = os.Executable()
	s.StateDir = getenv("KHO_STATE_DIR")
	if s.StateDir == "" {
		s.StateDir = filepath.Join(repo, ".kho")
	}
	s.CacheDir = getenv("KHO_CACHE_DIR")
	if s.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no cache folder: set KHO_CACHE_DIR (%v)", err)
		}
		s.CacheDir = filepath.Join(base, "kho")
	}
	ports := []struct {
		env  string
		def  int
		into *int
	}{
		{"KHO_DEV_POSTGRES_PORT", 15432, &s.Ports.Postgres},
		{"KHO_DEV_MINIO_PORT", 19000, &s.Ports.MinIO},
		{"KHO_DEV_VAULT_PORT", 18200, &s.Ports.Vault},
		{"KHO_DEV_KHOD_PORT", 8480, &s.Ports.Khod},
	}
	for _, p := range ports {
		*p.into = p.def
		if v := getenv(p.env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1024 || n > 65535 {
				return nil, fmt.Errorf("%s must be a port number from 1024 to 65535, not %q", p.env, v)
			}
			*p.into = n
		}
	}
	return s, nil
}

// FindRepo walks up from dir to the folder whose go.mod declares module kho.
func FindRepo(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module kho\n") {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("not inside a kho checkout (no go.mod declaring module kho above the current folder)")
		}
		d = parent
	}
}

func (s *Stack) say(format string, args ...any) {
	fmt.Fprintf(s.Out, "kho dev: "+format+"\n", args...)
}

func (s *Stack) path(elem ...string) string {
	return filepath.Join(append([]string{s.StateDir}, elem...)...)
}

func (s *Stack) statePath() string { return s.path("stack.json") }

// LoadState reads stack.json.
func (s *Stack) LoadState() (*State, error) {
	return ReadState(s.statePath())
}

// ReadState reads a stack.json.
func ReadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("the dev stack has not been set up here (%s missing): run make test or kho dev up", path)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %v (kho dev down, remove it, kho dev up)", path, err)
	}
	return &st, nil
}

func (s *Stack) saveState(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.statePath())
}

func secret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// Up starts whatever is not running, bootstraps it and writes stack.json. It
// is idempotent: a running stack is checked and reused.
func (s *Stack) Up(ctx context.Context) (*State, error) {
	start := time.Now()
	for _, d := range []string{s.StateDir, s.path("logs"), s.path("run"), filepath.Join(s.CacheDir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(s.StateDir, 0o711); err != nil {
		return nil, err
	}
	st, err := s.LoadState()
	if _, statErr := os.Stat(s.statePath()); errors.Is(statErr, os.ErrNotExist) {
		st = &State{} // a first up here
	} else if err != nil {
		// Never written over: it holds Vault's unseal key and root token,
		// without which Vault's data cannot be opened again.
		return nil, err
	}
	if err := s.samePorts(st); err != nil {
		return nil, err
	}
	st.KhodListen = fmt.Sprintf("127.0.0.1:%d", s.Ports.Khod)
	st.DevIdPKey = s.path("dev-idp.jwk.json")

	switch {
	case s.Cluster && st.Cluster == nil && st.MinIOEndpoint != "":
		return nil, fmt.Errorf("%s holds a single-node dev stack; run the cluster in a folder of its own (KHO_STATE_DIR=.kho-cluster kho dev up --cluster), or kho dev down and remove %s first", s.StateDir, s.StateDir)
	case s.Cluster || st.Cluster != nil:
		if !s.Cluster {
			s.say("this folder holds a cluster stack: starting the cluster")
		}
		if err := s.upCluster(ctx, st); err != nil {
			return nil, err
		}
		s.say("cluster ready in %s (state in %s)", time.Since(start).Round(100*time.Millisecond), s.StateDir)
		return st, nil
	}

	if url := s.Getenv("KHO_DATABASE_URL"); url != "" {
		st.DatabaseURL, st.DatabaseAppURL, st.DatabaseAdminURL, st.ManagedPostgres = url, "", "", false
		s.say("postgres: using KHO_DATABASE_URL (not starting a server)")
		if err := s.checkExternalPostgres(ctx, url); err != nil {
			return nil, err
		}
	} else if err := s.upPostgres(ctx, st); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := s.saveState(st); err != nil {
		return nil, err
	}
	if err := s.upMinIO(ctx, st); err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	if err := s.saveState(st); err != nil {
		return nil, err
	}
	if err := s.upVault(ctx, st); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if err := s.saveState(st); err != nil {
		return nil, err
	}
	s.say("stack ready in %s (state in %s)", time.Since(start).Round(100*time.Millisecond), s.StateDir)
	return st, nil
}

// samePorts refuses to go on when a server this stack started still runs
// on another port than the one it is now configured for (the defaults
// changed, or a KHO_DEV_*_PORT did): up would hand out addresses nothing
// listens on.
func (s *Stack) samePorts(st *State) error {
	for _, svc := range []struct {
		name, env string
		port      int
		recorded  string
		pids      []PIDFile
	}{
		{"postgres", "KHO_DEV_POSTGRES_PORT", s.Ports.Postgres, st.DatabaseURL, []PIDFile{s.pgPID()}},
		{"minio", "KHO_DEV_MINIO_PORT", s.Ports.MinIO, st.MinIOEndpoint, []PIDFile{s.minioPID(), s.frontPID("minio")}},
		{"vault", "KHO_DEV_VAULT_PORT", s.Ports.Vault, st.VaultAddr, []PIDFile{s.vaultPID(), s.frontPID("vault")}},
	} {
		was := portOf(svc.recorded)
		if was == 0 || was == svc.port {
			continue
		}
		for _, pf := range svc.pids {
			if pid, _ := pf.Running(); pid != 0 {
				return fmt.Errorf("%s runs on port %d (pid %d), but this stack is now configured for port %d: run kho dev down first, or set %s=%d", svc.name, was, pid, svc.port, svc.env, was)
			}
		}
	}
	return nil
}

// portOf is the port in a URL (postgres://…, http://…) or a host:port; 0
// when there is none.
func portOf(addr string) int {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	if n, err := strconv.Atoi(port); err == nil && n > 0 && n <= 65535 {
		return n
	}
	return 0
}

// Down stops the servers up started, newest first; their data stays.
func (s *Stack) Down() error {
	var errs []error
	if st, err := s.LoadState(); err == nil && st.Cluster != nil {
		for _, p := range s.clusterPIDs() {
			stopped, err := p.pf.stop(p.sig, 30*time.Second)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			} else if stopped {
				s.say("%s stopped", p.name)
			}
		}
		if _, err := s.stopPostgres(); err != nil {
			errs = append(errs, fmt.Errorf("postgres: %w", err))
		} else {
			s.say("postgres stopped")
		}
		return errors.Join(errs...)
	}
	for _, svc := range []struct {
		name string
		stop func() (bool, error)
	}{
		{"vault", s.stopVault},
		{"minio", s.stopMinIO},
		{"postgres", s.stopPostgres},
	} {
		stopped, err := svc.stop()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", svc.name, err))
		case stopped:
			s.say("%s stopped", svc.name)
		default:
			s.say("%s was not running (not started by this stack)", svc.name)
		}
	}
	return errors.Join(errs...)
}

// ServiceStatus is one line of `kho dev status`.
type ServiceStatus struct {
	Name    string
	Address string
	PID     int // 0 when not started by this stack
	Healthy bool
	Detail  string
}

// Status reports each service's address, pid and health.
func (s *Stack) Status(ctx context.Context) ([]ServiceStatus, error) {
	st, err := s.LoadState()
	if err != nil {
		return nil, err
	}
	if st.Cluster != nil {
		return append([]ServiceStatus{s.postgresStatus(ctx, st)}, s.clusterStatus(ctx, st)...), nil
	}
	return []ServiceStatus{
		s.postgresStatus(ctx, st),
		s.minioStatus(ctx, st),
		s.vaultStatus(ctx, st),
	}, nil
}

// KhodEnv returns the environment khod runs with in the dev stack: its own
// credentials only, never a root token or root password.
func (st *State) KhodEnv() [][2]string {
	db := st.DatabaseAppURL
	if db == "" {
		db = st.DatabaseURL // a server of the user's own: one role for all
	}
	env := [][2]string{
		{"KHO_MODE", "dev"},
		{"KHO_LISTEN", st.KhodListen},
		{"KHO_DATABASE_URL", db},
		{"KHO_MINIO_ENDPOINT", st.MinIOEndpoint},
		{"KHO_MINIO_ACCESS_KEY", st.MinIOAccessKey},
		{"KHO_MINIO_SECRET_KEY", st.MinIOSecretKey},
		{"KHO_MINIO_BUCKET", st.MinIOBucket},
		{"KHO_VAULT_ADDR", st.VaultAddr},
		{"KHO_VAULT_ROLE_ID", st.VaultRoleID},
		{"KHO_VAULT_SECRET_ID", st.VaultSecretID},
		{"KHO_DEV_IDP_KEY", st.DevIdPKey},
	}
	if st.Cluster != nil {
		env = append(env, [2]string{"KHO_DATABASE_READ_URL", st.Cluster.ReplicaURL})
	}
	return env
}

// KhodNodeEnv is KhodEnv for the cluster's khod replica i: its own port
// and metrics port, and the PostgreSQL replica for the reads that may lag.
func (st *State) KhodNodeEnv(i int) [][2]string {
	env := st.KhodEnv()
	for k := range env {
		if env[k][0] == "KHO_LISTEN" {
			env[k][1] = st.Cluster.KhodNodes[i]
		}
	}
	// Agencies' tokens name the front, whichever replica issues or checks
	// them.
	return append(env, [2]string{"KHO_METRICS_LISTEN", st.Cluster.KhodMetrics[i]}, [2]string{"KHO_PUBLIC_URL", "http://" + st.KhodListen})
}

// ShellQuote quotes v for a POSIX shell.
func ShellQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
