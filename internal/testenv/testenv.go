// Package testenv connects integration tests to the real dev stack that
// `make test` starts (kho dev up): PostgreSQL, MinIO and Vault. Each test gets
// its own PostgreSQL schema, and names of its own for objects and Vault keys,
// so packages can run in parallel against one stack.
//
// A test that needs the stack and does not find it fails; it never skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"kho/internal/devstack"
	"kho/postgres"
	"kho/storage"
	"kho/storage/minioadmin"
	"kho/vault"
)

var (
	once    sync.Once
	state   *devstack.State
	repo    string
	loadErr error
)

// Stack returns the running dev stack's state, failing the test when there is
// none.
func Stack(t testing.TB) *devstack.State {
	t.Helper()
	once.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			loadErr = err
			return
		}
		repo, loadErr = devstack.FindRepo(wd)
		if loadErr != nil {
			return
		}
		dir := os.Getenv("KHO_STATE_DIR")
		if dir == "" {
			dir = filepath.Join(repo, ".kho")
		}
		state, loadErr = devstack.ReadState(filepath.Join(dir, "stack.json"))
	})
	if loadErr != nil {
		t.Fatalf("integration test needs the dev stack: %v", loadErr)
	}
	return state
}

// RepoDir returns the checkout's root folder.
func RepoDir(t testing.TB) string {
	t.Helper()
	Stack(t)
	return repo
}

// Name returns a fresh lower-case name with the given prefix, for schemas,
// object prefixes and Vault keys.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Context returns a context that ends with the test.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// DatabaseURL returns the URL of the dev stack's database (role kho).
func DatabaseURL(t testing.TB) string { return Stack(t).DatabaseURL }

// Schema creates an empty schema of the test's own and drops it at cleanup.
func Schema(t testing.TB) string {
	t.Helper()
	url := DatabaseURL(t)
	name := Name("t_")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	return name
}

// DB opens the dev stack's database on a fresh schema, migrated unless
// migrate is false.
func DB(t testing.TB, migrate bool) *postgres.DB {
	t.Helper()
	ctx := Context(t)
	db, err := postgres.Open(ctx, DatabaseURL(t), postgres.WithSchema(Schema(t)), postgres.WithMaxConns(8))
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(db.Close)
	if migrate {
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	return db
}

// KhodBlobs returns the MinIO blob store with khod's own credentials, limited
// to khod's bucket.
func KhodBlobs(t testing.TB) *storage.MinIO {
	t.Helper()
	st := Stack(t)
	m, err := storage.NewMinIO(storage.MinIOConfig{
		Endpoint: st.MinIOEndpoint, AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: st.MinIOBucket,
	})
	if err != nil {
		t.Fatalf("minio: %v", err)
	}
	return m
}

// MinIORoot returns MinIO with root credentials, to look behind khod's back.
func MinIORoot(t testing.TB) *minioadmin.Root {
	t.Helper()
	st := Stack(t)
	r, err := minioadmin.New(st.MinIOEndpoint, st.MinIORootUser, st.MinIORootPassword)
	if err != nil {
		t.Fatalf("minio root: %v", err)
	}
	return r
}

// VaultRoot returns a Vault client with the root token. Only tests and the
// operator's bootstrap hold it; khod never does.
func VaultRoot(t testing.TB) *vaultapi.Client {
	t.Helper()
	st := Stack(t)
	c, err := vault.NewAPIClient(st.VaultAddr, st.VaultRootToken, 10*time.Second)
	if err != nil {
		t.Fatalf("vault root: %v", err)
	}
	return c
}

// KhodVault logs in with khod's AppRole, exactly as khod does, and revokes the
// token at cleanup.
func KhodVault(t testing.TB) *vault.Client {
	t.Helper()
	st := Stack(t)
	c, err := vault.New(Context(t), vault.Config{Address: st.VaultAddr, RoleID: st.VaultRoleID, SecretID: st.VaultSecretID})
	if err != nil {
		t.Fatalf("vault login as khod: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Env returns the environment for a khod process against the dev stack, as
// KEY=VALUE pairs, with overrides applied.
func Env(t testing.TB, overrides map[string]string) []string {
	t.Helper()
	var env []string
	for _, kv := range Stack(t).KhodEnv() {
		if v, ok := overrides[kv[0]]; ok {
			kv[1] = v
			delete(overrides, kv[0])
		}
		env = append(env, kv[0]+"="+kv[1])
	}
	for k, v := range overrides {
		env = append(env, k+"="+v)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KHO_") {
			env = append(env, kv)
		}
	}
	return env
}
