package devstack_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kho/internal/devstack"
	"kho/internal/testenv"
)

// khod's environment in the dev stack carries its own credentials and never
// an operator's: no Vault root token or unseal key, no MinIO root password, no
// database superuser.
func TestKhodEnvHoldsNoRootCredentials(t *testing.T) {
	st := testenv.Stack(t)
	var all strings.Builder
	for _, kv := range st.KhodEnv() {
		all.WriteString(kv[0] + "=" + kv[1] + "\n")
	}
	env := all.String()
	for name, secret := range map[string]string{
		"vault root token":    st.VaultRootToken,
		"vault unseal key":    st.VaultUnsealKey,
		"minio root password": st.MinIORootPassword,
		"database admin url":  st.DatabaseAdminURL,
	} {
		if secret != "" && strings.Contains(env, secret) {
			t.Errorf("khod's environment holds the %s", name)
		}
	}
	if !strings.Contains(env, "KHO_DATABASE_URL="+st.DatabaseAppURL+"\n") || !strings.Contains(st.DatabaseAppURL, "kho_app") {
		t.Errorf("khod does not connect as the application role")
	}
	for _, want := range []string{"KHO_VAULT_ROLE_ID=", "KHO_VAULT_SECRET_ID=", "KHO_MINIO_ACCESS_KEY=khod", "KHO_MODE=dev"} {
		if !strings.Contains(env, want) {
			t.Errorf("khod's environment lacks %s", want)
		}
	}
}

func TestNewReadsPortsAndRejectsBadOnes(t *testing.T) {
	repo := testenv.RepoDir(t)
	env := map[string]string{"KHO_DEV_MINIO_PORT": "61000", "KHO_STATE_DIR": "/tmp/x", "KHO_CACHE_DIR": "/tmp/c"}
	s, err := devstack.New(repo, func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ports.MinIO != 61000 || s.Ports.Postgres != 15432 || s.StateDir != "/tmp/x" || s.CacheDir != "/tmp/c" {
		t.Fatalf("stack: %+v", s)
	}
	for _, bad := range []string{"80", "abc", "70000"} {
		env["KHO_DEV_VAULT_PORT"] = bad
		if _, err := devstack.New(repo, func(k string) string { return env[k] }, nil); err == nil {
			t.Errorf("port %q accepted", bad)
		}
	}
	if _, err := devstack.New("/", func(string) string { return "" }, nil); err == nil {
		t.Error("stack outside a checkout accepted")
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"abc": "'abc'", "it's": `'it'\''s'`, "": "''", "$(rm -rf /)": "'$(rm -rf /)'"} {
		if got := devstack.ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// A folder that holds a single-node stack is not turned into a cluster:
// its Vault keys and MinIO data are another server's. Up says where the
// cluster goes instead, and touches nothing.
func TestClusterRefusesASingleNodeFolder(t *testing.T) {
	dir := t.TempDir()
	single := []byte(`{"minio_endpoint": "127.0.0.1:19000", "vault_root_token": "kept"}`)
	s := stackWithState(t, dir, single, nil)
	s.Cluster = true
	_, err := s.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "KHO_STATE_DIR") {
		t.Fatalf("up --cluster on a single-node folder: %v", err)
	}
	stateUnchanged(t, dir, single)
}

// stackWithState is a stack in dir whose stack.json holds state, with env
// added to its folders.
func stackWithState(t *testing.T, dir string, state []byte, env map[string]string) *devstack.Stack {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "stack.json"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{"KHO_STATE_DIR": dir, "KHO_CACHE_DIR": t.TempDir()}
	for k, v := range env {
		all[k] = v
	}
	s, err := devstack.New(testenv.RepoDir(t), func(k string) string { return all[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stateUnchanged fails unless dir's stack.json still holds want.
func stateUnchanged(t *testing.T, dir string, want []byte) {
	t.Helper()
	if b, _ := os.ReadFile(filepath.Join(dir, "stack.json")); string(b) != string(want) {
		t.Fatalf("stack.json changed: %s", b)
	}
}

// A server the stack started that still runs on a port other than the one
// now configured (the defaults moved, or a KHO_DEV_*_PORT changed) stops
// up with what to do, before anything is touched: otherwise up would hand
// out addresses nothing listens on.
func TestUpRefusesServersRunningOnOtherPorts(t *testing.T) {
	dir := t.TempDir()
	old := []byte(`{"minio_endpoint": "127.0.0.1:59000", "vault_root_token": "kept"}`)
	s := stackWithState(t, dir, old, map[string]string{"KHO_DEV_MINIO_PORT": "19000"})
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A sleep stands for the MinIO the stack started on 59000.
	recordPID(t, filepath.Join(dir, "run", "minio.pid"), sleeper(t))
	_, err := s.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "kho dev down") || !strings.Contains(err.Error(), "KHO_DEV_MINIO_PORT=59000") {
		t.Fatalf("up with MinIO running on another port: %v", err)
	}
	stateUnchanged(t, dir, old)
}

// A stack.json that cannot be read is never written over: it holds
// Vault's unseal key and root token. Up says what is wrong and stops.
func TestUpRefusesACorruptState(t *testing.T) {
	dir := t.TempDir()
	corrupt := []byte(`{"vault_unseal_key": "kept", `)
	s := stackWithState(t, dir, corrupt, nil)
	if _, err := s.Up(context.Background()); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("up with a corrupt stack.json: %v", err)
	}
	stateUnchanged(t, dir, corrupt)
}
