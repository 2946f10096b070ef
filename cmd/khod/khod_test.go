package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kho/internal/devidp"
	"kho/internal/devstack"
	"kho/internal/freeport"
	"kho/internal/testenv"
	"kho/storage/minioadmin"
)

var khodBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "khod-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	khodBin = filepath.Join(dir, "khod")
	out, err := exec.Command("go", "build", "-o", khodBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build khod: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// migratedSchema gives the test a migrated schema of its own, so khod starts
// without migration log lines.
func migratedSchema(t *testing.T) string {
	t.Helper()
	return testenv.DB(t, true).Schema()
}

func TestBadConfigStopsWithOneLine(t *testing.T) {
	st := testenv.Stack(t)
	schema := migratedSchema(t)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"fail/unknown flag", []string{"--no-such-option"}, nil, "flag provided but not defined: -no-such-option"},
		{"fail/malformed database url", nil, map[string]string{"KHO_DATABASE_URL": "postgres//kho@127.0.0.1"}, "--database-url must be a postgres://"},
		{"fail/malformed vault url", []string{"--vault-addr", "vault:8200"}, nil, "--vault-addr"},
		{"fail/unreachable vault", []string{"--vault-addr", "http://127.0.0.1:1"}, nil, "vault: cannot log in at http://127.0.0.1:1"},
		{"fail/wrong approle secret", []string{"--vault-secret-id", "00000000-0000-0000-0000-000000000000"}, nil, "AppRole login refused"},
		{"fail/unreachable postgres", nil, map[string]string{"KHO_DATABASE_URL": "postgres://kho:x@127.0.0.1:1/kho?connect_timeout=2"}, "postgres: cannot reach 127.0.0.1:1"},
		{"fail/unreachable minio", []string{"--minio-endpoint", fmt.Sprintf("127.0.0.1:%d", freePort(t))}, nil, "MinIO not reachable"},
		{"fail/dev identity provider in production", []string{"--mode", "production"}, nil, "refused outside --mode=dev"},
		{"fail/port taken", []string{"--listen", st.MinIOEndpoint}, nil, "listen on " + st.MinIOEndpoint},
		{"fail/missing timestamp authority root", []string{"--tsa-root", "/nonexistent/tsa.pem"}, nil, "/nonexistent/tsa.pem"},
		{"fail/long-term level without a timestamp authority", []string{"--pades-level", "B-LT"}, nil, "--pades-level B-LT needs --tsa-url"},
		{"fail/unknown level", []string{"--pades-level", "B-X"}, nil, "--pades-level must be B-B, B-T, B-LT or B-LTA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"KHO_DATABASE_SCHEMA": schema, "KHO_LISTEN": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
				"KHO_METRICS_LISTEN": fmt.Sprintf("127.0.0.1:%d", freePort(t))}
			for k, v := range tt.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, khodBin, tt.args...)
			cmd.Env = testenv.Env(t, env)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v (want status 1); stderr:\n%s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one line on stderr, got %d:\n%s", len(lines), stderr.String())
			}
			if !strings.HasPrefix(lines[0], "khod: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr %q does not name %q", lines[0], tt.want)
			}
			if strings.Contains(lines[0], st.VaultSecretID) || strings.Contains(lines[0], st.MinIOSecretKey) {
				t.Fatalf("error line leaks a secret: %q", lines[0])
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	out, err := exec.Command(khodBin, "-h").Output()
	if err != nil {
		t.Fatalf("khod -h: %v", err)
	}
	if !bytes.Contains(out, []byte("-database-url")) {
		t.Fatalf("khod -h:\n%s", out)
	}
}

// running is a khod process under test.
type running struct {
	cmd    *exec.Cmd
	base   string
	stderr *lockedBuffer
	done   chan error
}

func startKhod(t *testing.T, env map[string]string) *running {
	t.Helper()
	port := freePort(t)
	env["KHO_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", port)
	if _, set := env["KHO_METRICS_LISTEN"]; !set {
		env["KHO_METRICS_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	cmd := exec.Command(khodBin)
	cmd.Env = testenv.Env(t, env)
	r := &running{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = io.Discard, r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("khod stderr:\n%s", r.stderr.String())
		}
	})
	return r
}

type readiness struct {
	Status string `json:"status"`
	Checks map[string]struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"checks"`
}

func (r *running) ready(t *testing.T) (int, readiness) {
	t.Helper()
	var out readiness
	resp, err := http.Get(r.base + "/readyz")
	if err != nil {
		return 0, out
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// waitReady polls /readyz until cond holds or the deadline passes.
func (r *running) waitReady(t *testing.T, within time.Duration, cond func(int, readiness) bool) (readiness, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		code, rd := r.ready(t)
		if cond(code, rd) {
			return rd, time.Since(start)
		}
		select {
		case err := <-r.done:
			t.Fatalf("khod exited: %v\n%s", err, r.stderr.String())
		default:
		}
		if time.Since(start) > within {
			t.Fatalf("readiness condition not met within %s; last: %d %+v", within, code, rd)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func allOK(code int, rd readiness) bool {
	return code == 200 && rd.Status == "ok" && len(rd.Checks) == 3 &&
		rd.Checks["postgres"].Status == "ok" && rd.Checks["minio"].Status == "ok" && rd.Checks["vault"].Status == "ok"
}

// khod's readiness follows MinIO: a MinIO of the test's own is stopped and
// restarted under a running khod.
func TestReadyzFollowsMinIO(t *testing.T) {
	st := testenv.Stack(t)
	dir := t.TempDir()
	port := freePort(t)
	endpoint := fmt.Sprintf("127.0.0.1:%d", port)
	pf := devstack.NewPIDFile(filepath.Join(dir, "minio.pid"))
	const user, pass = "test-root", "test-root-password"
	start := func() {
		t.Helper()
		if _, err := devstack.StartMinIO(pf, st.MinIOBinary, filepath.Join(dir, "data"), port, user, pass, filepath.Join(dir, "minio.log")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for devstack.MinIOReady(context.Background(), endpoint) != nil {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
				t.Fatalf("test minio not ready:\n%s", b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	start()
	t.Cleanup(func() { _ = pf.Stop() })
	root, err := minioadmin.New(endpoint, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	if err := devstack.WhileMinIOStarts(testenv.Context(t), func() error { return root.EnsureBucket(testenv.Context(t), "kho-documents") }); err != nil {
		t.Fatal(err)
	}

	k := startKhod(t, map[string]string{
		"KHO_DATABASE_SCHEMA":  migratedSchema(t),
		"KHO_MINIO_ENDPOINT":   endpoint,
		"KHO_MINIO_ACCESS_KEY": user,
		"KHO_MINIO_SECRET_KEY": pass,
	})
	k.waitReady(t, 30*time.Second, allOK)

	// Timed from when MinIO is gone: its own shutdown (flushing its queues)
	// can take seconds on a busy machine, and is not khod's to detect.
	if err := pf.Stop(); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	rd, _ := k.waitReady(t, 10*time.Second, func(code int, rd readiness) bool {
		return code == 503 && rd.Checks["minio"].Status == "fail"
	})
	if took := time.Since(stopAt); took > 5*time.Second {
		t.Fatalf("readiness reported MinIO down %s after it was stopped; want within 5s", took)
	}
	if rd.Checks["postgres"].Status != "ok" || rd.Checks["vault"].Status != "ok" {
		t.Fatalf("other checks changed: %+v", rd)
	}
	if rd.Checks["minio"].Error == "" || strings.Contains(rd.Checks["minio"].Error, pass) {
		t.Fatalf("minio failure message: %q", rd.Checks["minio"].Error)
	}

	start()
	k.waitReady(t, 30*time.Second, allOK)
}

func TestServesTokensAndShutsDownGracefully(t *testing.T) {
	st := testenv.Stack(t)
	k := startKhod(t, map[string]string{"KHO_DATABASE_SCHEMA": migratedSchema(t)})
	k.waitReady(t, 30*time.Second, allOK)

	idp, err := devidp.Load(st.DevIdPKey)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := devidp.ParseAs("citizen:079085000002")
	tok, err := idp.Mint(p, "kho", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", k.base+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"person":"079085000002"`)) {
		t.Fatalf("/v1/me: %d %s", resp.StatusCode, body)
	}
	// The dev identity provider's public key is published in dev mode.
	resp, err = http.Get(k.base + "/dev/idp/jwks.json")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("dev jwks: %v %v", resp, err)
	}
	resp.Body.Close()

	if err := k.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-k.done:
		if err != nil {
			t.Fatalf("khod exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("khod did not stop within 20s of SIGTERM")
	}
	logs := k.stderr.String()
	if !strings.Contains(logs, `"msg":"khod stopped"`) {
		t.Fatalf("no clean stop in logs:\n%s", logs)
	}
	// Every log line is JSON, and none carries the citizen's number.
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
		}
	}
	if strings.Contains(logs, "079085000002") {
		t.Fatalf("logs carry a personal identification number:\n%s", logs)
	}
}
