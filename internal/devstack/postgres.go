package devstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// The dev stack's database and the role khod and the tests use. The role owns
// the database, so tests can create a schema each.
const (
	pgFallbackDir = "/var/lib/kho-dev"
	pgDatabase    = "kho"
	pgRole        = "kho"     // owns the database; migrations and tests use it
	pgAppRole     = "kho_app" // khod's: no UPDATE or DELETE on the audit trail
	pgSuperuser   = "kho_admin"
)

func (s *Stack) pgPID() PIDFile { return PIDFile{s.path("run", "postgres.pid")} }

// pgRunAs returns the credential to run PostgreSQL with: PostgreSQL refuses to
// run as root, so as root it runs as the postgres system user.
func pgRunAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres system user, which is missing (install Debian's postgresql package)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgRoot is where the cluster lives: in the state folder, unless PostgreSQL
// runs as another user who cannot reach it (a checkout under /root), in which
// case a folder of its own under /var/lib/kho-dev.
func (s *Stack) pgRoot(cred *syscall.Credential) string {
	dir := s.path("postgres")
	if cred == nil || traversableByOthers(s.StateDir) {
		return dir
	}
	sum := sha256.Sum256([]byte(s.StateDir))
	return filepath.Join(pgFallbackDir, hex.EncodeToString(sum[:6]), "postgres")
}

// traversableByOthers reports whether every folder from / down to dir lets
// any user pass through it.
func traversableByOthers(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

func chownTree(root string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

func pgURL(user, password string, port int, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: fmt.Sprintf("127.0.0.1:%d", port), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (s *Stack) upPostgres(ctx context.Context, st *State) error {
	bindir, ok := postgresBinaries()
	if !ok {
		if err := s.installPostgres(ctx); err != nil {
			return err
		}
		if bindir, ok = postgresBinaries(); !ok {
			return fmt.Errorf("postgresql installed, but initdb and postgres are still not found")
		}
	}
	cred, err := pgRunAs()
	if err != nil {
		return err
	}
	root := s.pgRoot(cred)
	data := filepath.Join(root, "data")
	sock := filepath.Join(root, "run")
	st.ManagedPostgres = true
	adminPass, rolePass, appPass := passwordOf(st.DatabaseAdminURL), passwordOf(st.DatabaseURL), passwordOf(st.DatabaseAppURL)
	for _, p := range []*string{&adminPass, &rolePass, &appPass} {
		if *p == "" {
			*p = secret(16)
		}
	}
	st.DatabaseAdminURL = pgURL(pgSuperuser, adminPass, s.Ports.Postgres, "postgres")
	st.DatabaseURL = pgURL(pgRole, rolePass, s.Ports.Postgres, pgDatabase)
	st.DatabaseAppURL = pgURL(pgAppRole, appPass, s.Ports.Postgres, pgDatabase)

	if pid, err := s.pgPID().Running(); err != nil {
		return err
	} else if pid != 0 {
		s.say("postgres already running (pid %d) on 127.0.0.1:%d", pid, s.Ports.Postgres)
		return s.pgEnsureRoles(ctx, st, rolePass, appPass)
	}
	if !portFree(s.Ports.Postgres) {
		return fmt.Errorf("port %d is taken by a process this stack did not start; stop it or set KHO_DEV_POSTGRES_PORT", s.Ports.Postgres)
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := s.pgInit(ctx, bindir, root, data, sock, adminPass, cred); err != nil {
			return err
		}
	}
	logPath := s.path("logs", "postgres.log")
	args := []string{
		"-D", data,
		"-p", strconv.Itoa(s.Ports.Postgres),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + sock,
		"-c", "max_connections=300",
	}
	pid, err := startDetached(s.pgPID(), filepath.Join(bindir, "postgres"), args, []string{"LANG=C.UTF-8", "PATH=/usr/bin:/bin"}, logPath, cred)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.say("postgres starting (pid %d) on 127.0.0.1:%d", pid, s.Ports.Postgres)
	if err := s.waitFor(ctx, "postgres", 60*time.Second, s.pgPID(), logPath, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, st.DatabaseAdminURL)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		return err
	}
	return s.pgEnsureRoles(ctx, st, rolePass, appPass)
}

func (s *Stack) pgInit(ctx context.Context, bindir, root, data, sock, adminPass string, cred *syscall.Credential) error {
	s.say("postgres: creating a cluster in %s", data)
	for _, d := range []string{data, sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	pwfile := filepath.Join(root, "initdb.pw")
	if err := os.WriteFile(pwfile, []byte(adminPass+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := chownTree(root, cred); err != nil {
		return err
	}
	// In the /var/lib/kho-dev fallback, the folders created above the
	// cluster must let the postgres user through. Nothing else is touched.
	if strings.HasPrefix(root, pgFallbackDir+"/") {
		for d := filepath.Dir(root); d != filepath.Dir(pgFallbackDir); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				return err
			}
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bindir, "initdb"),
		"-D", data, "-U", pgSuperuser, "--pwfile="+pwfile,
		"--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-instructions")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Env = []string{"LANG=C.UTF-8", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		logPath := s.path("logs", "initdb.log")
		_ = os.WriteFile(logPath, out, 0o644)
		return logError(logPath, "initdb failed: %v", err)
	}
	return nil
}

// pgEnsureRoles creates the owner role and database, and khod's application
// role, when missing.
func (s *Stack) pgEnsureRoles(ctx context.Context, st *State, rolePass, appPass string) error {
	c, err := pgx.Connect(ctx, st.DatabaseAdminURL)
	if err != nil {
		return fmt.Errorf("connect as superuser: %w", err)
	}
	defer c.Close(ctx)
	for _, r := range []struct{ name, pass string }{{pgRole, rolePass}, {pgAppRole, appPass}} {
		var exists bool
		if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, r.name).Scan(&exists); err != nil {
			return err
		}
		verb := "ALTER"
		if !exists {
			verb = "CREATE"
		}
		if _, err := c.Exec(ctx, fmt.Sprintf(`%s ROLE %s LOGIN PASSWORD %s`, verb, pgx.Identifier{r.name}.Sanitize(), quoteLiteral(r.pass))); err != nil {
			return fmt.Errorf("role %s: %w", r.name, err)
		}
	}
	var exists bool
	if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, pgDatabase).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := c.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s OWNER %s`, pgx.Identifier{pgDatabase}.Sanitize(), pgx.Identifier{pgRole}.Sanitize())); err != nil {
			return fmt.Errorf("database %s: %w", pgDatabase, err)
		}
	}
	return nil
}

func (s *Stack) checkExternalPostgres(ctx context.Context, dbURL string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, dbURL)
	if err != nil {
		return fmt.Errorf("postgres: KHO_DATABASE_URL does not connect: %v", err)
	}
	return c.Close(ctx)
}

func quoteLiteral(s string) string {
	// Passwords here are hex; quote anyway.
	out := "'"
	for _, r := range s {
		if r == '\'' {
			out += "''"
		} else {
			out += string(r)
		}
	}
	return out + "'"
}

func passwordOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}

func (s *Stack) stopPostgres() (bool, error) {
	// SIGINT is PostgreSQL's fast shutdown: clients are disconnected, the
	// cluster is checkpointed.
	return s.pgPID().stop(syscall.SIGINT, 30*time.Second)
}

func (s *Stack) postgresStatus(ctx context.Context, st *State) ServiceStatus {
	ss := ServiceStatus{Name: "postgres"}
	u, err := url.Parse(st.DatabaseURL)
	if err == nil {
		ss.Address = u.Host
	}
	ss.PID, _ = s.pgPID().Running()
	if !st.ManagedPostgres {
		ss.Detail = "external (KHO_DATABASE_URL)"
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, st.DatabaseURL)
	if err != nil {
		ss.Detail = joinDetail(ss.Detail, "not reachable")
		return ss
	}
	defer c.Close(ctx)
	var v string
	if err := c.QueryRow(cctx, `SHOW server_version`).Scan(&v); err == nil {
		ss.Healthy = true
		ss.Detail = joinDetail(ss.Detail, "PostgreSQL "+v)
	}
	return ss
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// waitFor polls check until it succeeds, the process dies, or timeout passes;
// failures quote the end of the service's log.
func (s *Stack) waitFor(ctx context.Context, name string, timeout time.Duration, pf PIDFile, logPath string, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if pid, _ := pf.Running(); pid == 0 {
			return logError(logPath, "%s exited during start", name)
		}
		if time.Now().After(deadline) {
			return logError(logPath, "%s not ready after %s (%v)", name, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
