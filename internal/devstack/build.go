package devstack

import (
	"context"
	"fmt"

	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Pinned versions of the servers built from Go modules when not on PATH.
const (
	MinIOModule  = "github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
	VaultVersion = "v1.19.4" // must match internal/tools/vaultserver/go.mod
)

// minioBinary finds minio on PATH or in the cache, building it once.
func (s *Stack) minioBinary(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	bin := filepath.Join(s.CacheDir, "bin", "minio")
	if isExecutable(bin) {
		return bin, nil
	}
	s.say("minio is not on PATH: building %s once into %s (about 6 minutes on 2 cores)", MinIOModule, filepath.Dir(bin))
	tmp := filepath.Join(s.CacheDir, "bin", ".minio-build")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", "-v", "-trimpath", "-ldflags=-s -w", MinIOModule)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	plan := buildPlan{expect: 6 * time.Minute, mainPkg: "github.com/minio/minio"}
	if err := s.runWithProgress(ctx, "minio", cmd, filepath.Join(s.CacheDir, "minio-build.log"), plan); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "minio"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// vaultBinary finds vault on PATH or in the cache (at the pinned version),
// building it once from internal/tools/vaultserver.
func (s *Stack) vaultBinary(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("vault"); err == nil {
		return p, nil
	}
	bin := filepath.Join(s.CacheDir, "bin", "vault")
	if isExecutable(bin) {
		out, err := exec.CommandContext(ctx, bin, "version").Output()
		if err == nil && strings.Contains(string(out), VaultVersion) {
			return bin, nil
		}
	}
	src := filepath.Join(s.RepoDir, "internal", "tools", "vaultserver")
	if _, err := os.Stat(filepath.Join(src, "go.sum")); err != nil {
		return "", fmt.Errorf("vault is not on PATH and %s is missing: run kho dev up from a kho checkout", src)
	}
	s.say("vault is not on PATH: building Vault %s once into %s (module downloads, then about 12 minutes of compiling on 2 cores)", VaultVersion, filepath.Dir(bin))
	tmp := bin + ".building"
	env := append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	plan := buildPlan{expect: 12 * time.Minute, mainPkg: "kho/internal/tools/vaultserver"}
	// The modules first, so the count of packages to compile can be known.
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-x")
	dl.Dir, dl.Env = src, env
	if err := s.runWithProgress(ctx, "vault (modules)", dl, filepath.Join(s.CacheDir, "vault-download.log"), buildPlan{expect: 2 * time.Minute}); err != nil {
		return "", err
	}
	list := exec.CommandContext(ctx, "go", "list", "-deps", ".")
	list.Dir, list.Env = src, env
	if out, err := list.Output(); err == nil {
		plan.packages = strings.Count(string(out), "\n")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-v", "-trimpath", "-ldflags=-s -w", "-o", tmp, ".")
	cmd.Dir, cmd.Env = src, env
	if err := s.runWithProgress(ctx, "vault", cmd, filepath.Join(s.CacheDir, "vault-build.log"), plan); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// buildPlan is what a build's progress is measured against.
type buildPlan struct {
	expect   time.Duration // about how long it takes on 2 cores (0: unknown)
	mainPkg  string        // the last package go build -v names before linking
	packages int           // packages to compile (0: unknown)
}

// phase reads a build's log (go build -v, go mod download -x) and says
// where it is: resolving, downloading n modules, compiling n of m
// packages, or linking.
func phase(log string, plan buildPlan) string {
	var downloads, packages int
	linking := false
	for _, l := range strings.Split(log, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "go: downloading "), strings.HasPrefix(l, "# get ") && strings.HasSuffix(l, ".zip"):
			downloads++
		case l == "" || strings.HasPrefix(l, "go: ") || strings.HasPrefix(l, "#") || strings.ContainsAny(l, " \t"):
		default:
			packages++
			if plan.mainPkg != "" && l == plan.mainPkg {
				linking = true
			}
		}
	}
	switch {
	case linking:
		return "linking"
	case packages > 0 && plan.packages > 0:
		return fmt.Sprintf("compiling %d of %d packages", min(packages, plan.packages), plan.packages)
	case packages > 0:
		return fmt.Sprintf("compiling (%d packages so far)", packages)
	case downloads > 0:
		return fmt.Sprintf("downloading modules (%d so far)", downloads)
	}
	return "resolving modules"
}

// runWithProgress runs a long build with its output in logPath, printing
// every 15 seconds which build runs, its phase, how long it has run and
// about how long it takes, so a first run never looks hung.
func (s *Stack) runWithProgress(ctx context.Context, what string, cmd *exec.Cmd, logPath string, plans ...buildPlan) error {
	var plan buildPlan
	if len(plans) > 0 {
		plan = plans[0]
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("build %s: %w", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return logError(logPath, "build %s failed after %s", what, time.Since(start).Round(time.Second))
			}
			s.say("built %s in %s", what, time.Since(start).Round(time.Second))
			return nil
		case <-t.C:
			b, _ := os.ReadFile(logPath)
			of := ""
			if plan.expect > 0 {
				of = " of about " + plan.expect.String()
			}
			s.say("  building %s: %s — %s elapsed%s", what, phase(string(b), plan), time.Since(start).Round(time.Second), of)
		}
	}
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// postgresBinaries finds initdb and postgres: on PATH, else in Debian's
// versioned folders (newest first). It returns the folder holding both.
func postgresBinaries() (string, bool) {
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dir := filepath.Dir(real)
			if isExecutable(filepath.Join(dir, "initdb")) {
				return dir, true
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "postgres")) && isExecutable(filepath.Join(d, "initdb")) {
			return d, true
		}
	}
	return "", false
}

// installPostgres installs Debian's postgresql package; only root may.
func (s *Stack) installPostgres(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("PostgreSQL (initdb, postgres) is not installed: install Debian's postgresql package, or set KHO_DATABASE_URL to a server of your own")
	}
	s.say("PostgreSQL is not installed: installing Debian's postgresql package")
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "postgresql"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if err := s.runWithProgress(ctx, "apt-get "+args[0], cmd, filepath.Join(s.StateDir, "logs", "apt-get.log")); err != nil {
			return err
		}
	}
	return nil
}
