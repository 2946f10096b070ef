package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// base is a complete, valid set of options.
func base() map[string]string {
	return map[string]string{
		"KHO_DATABASE_URL":     "postgres://kho:pw@127.0.0.1:5432/kho",
		"KHO_MINIO_ENDPOINT":   "127.0.0.1:9000",
		"KHO_MINIO_ACCESS_KEY": "khod",
		"KHO_MINIO_SECRET_KEY": "secret",
		"KHO_VAULT_ADDR":       "http://127.0.0.1:8200",
		"KHO_VAULT_ROLE_ID":    "role",
		"KHO_VAULT_SECRET_ID":  "sid",
		"KHO_TRUSTED_ISSUER":   "https://idp.example=https://idp.example/jwks.json",
		"KHO_ISSUER_KINDS":     "https://idp.example=citizen+business_rep",
	}
}

// noIssuers removes the trusted issuers (and the kinds they may assert).
func noIssuers(m map[string]string) {
	delete(m, "KHO_TRUSTED_ISSUER")
	delete(m, "KHO_ISSUER_KINDS")
}

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "khod.json")
	if err := os.WriteFile(file, []byte(`{"listen": "127.0.0.1:9999", "log-level": "debug", "migrate-on-start": true, "shutdown-timeout": "3s",
		"trusted-issuer": ["https://a.example=https://a.example/jwks", "https://b.example=https://b.example/jwks"],
		"issuer-kinds": ["https://a.example=agency+agency_officer", "https://b.example=security_officer"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "sid")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("ok/defaults", func(t *testing.T) {
		c, err := LoadConfig(nil, getenv(base()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != "127.0.0.1:8480" || c.Mode != ModeProduction || c.MinIOBucket != "kho-documents" || c.Audience != "kho" || c.MigrateOnStart {
			t.Fatalf("defaults: %+v", c)
		}
	})
	t.Run("ok/flags beat env beat file", func(t *testing.T) {
		env := base()
		env["KHO_LOG_LEVEL"] = "warn"
		noIssuers(env)
		c, err := LoadConfig([]string{"--config", file, "--listen", "127.0.0.1:7000"}, getenv(env), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != "127.0.0.1:7000" {
			t.Errorf("flag lost to file: %s", c.Listen)
		}
		if c.LogLevel != "warn" {
			t.Errorf("env lost to file: %s", c.LogLevel)
		}
		if !c.MigrateOnStart || c.ShutdownTimeout != 3*time.Second || len(c.TrustedIssuers) != 2 {
			t.Errorf("file not applied: %+v", c)
		}
	})
	t.Run("ok/config file named in the environment", func(t *testing.T) {
		env := base()
		noIssuers(env)
		env["KHO_CONFIG"] = file
		c, err := LoadConfig(nil, getenv(env), nil)
		if err != nil || c.Listen != "127.0.0.1:9999" {
			t.Fatalf("%v %+v", err, c)
		}
	})
	t.Run("ok/secret from file", func(t *testing.T) {
		env := base()
		delete(env, "KHO_VAULT_SECRET_ID")
		c, err := LoadConfig([]string{"--vault-secret-id-file", secretFile}, getenv(env), nil)
		if err != nil || c.VaultSecretID != "from-file" {
			t.Fatalf("%v %q", err, c.VaultSecretID)
		}
	})
	t.Run("ok/dev identity provider in dev mode", func(t *testing.T) {
		env := base()
		noIssuers(env)
		if _, err := LoadConfig([]string{"--mode", "dev", "--dev-idp-key", "/x"}, getenv(env), nil); err != nil {
			t.Fatal(err)
		}
	})

	fails := []struct {
		name string
		args []string
		mod  func(map[string]string)
		want string
	}{
		{"fail/unknown flag", []string{"--nope"}, nil, "flag provided but not defined: -nope"},
		{"fail/stray argument", []string{"serve"}, nil, `unexpected argument "serve"`},
		{"fail/missing database", nil, func(m map[string]string) { delete(m, "KHO_DATABASE_URL") }, "--database-url (KHO_DATABASE_URL) is required"},
		{"fail/malformed database url", []string{"--database-url", "localhost:5432"}, nil, "--database-url must be a postgres://"},
		{"fail/malformed vault address", []string{"--vault-addr", "127.0.0.1:8200"}, nil, "--vault-addr"},
		{"fail/malformed minio endpoint", []string{"--minio-endpoint", "http://x:9000/path"}, nil, "--minio-endpoint"},
		{"fail/bad listen", []string{"--listen", "8480"}, nil, "--listen"},
		{"fail/bad mode", []string{"--mode", "test"}, nil, "--mode"},
		{"fail/bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"fail/bad duration in env", nil, func(m map[string]string) { m["KHO_SHUTDOWN_TIMEOUT"] = "soon" }, "KHO_SHUTDOWN_TIMEOUT"},
		{"fail/no AppRole", nil, func(m map[string]string) { delete(m, "KHO_VAULT_ROLE_ID") }, "AppRole"},
		{"fail/secret twice", []string{"--vault-secret-id-file", secretFile}, nil, "not both"},
		{"fail/missing secret file", []string{"--minio-secret-key-file", "/nonexistent"}, func(m map[string]string) { delete(m, "KHO_MINIO_SECRET_KEY") }, "--minio-secret-key-file"},
		{"fail/dev identity provider outside dev mode", []string{"--dev-idp-key", "/x"}, nil, "refused outside --mode=dev"},
		{"fail/profiles outside dev mode", []string{"--pprof-listen", "127.0.0.1:6060"}, nil, "profiles are served only in --mode=dev"},
		{"fail/no issuer", nil, noIssuers, "no token issuer is trusted"},
		{"fail/issuer without kinds", nil, func(m map[string]string) { delete(m, "KHO_ISSUER_KINDS") }, "--issuer-kinds"},
		{"fail/kinds of no issuer", nil, func(m map[string]string) {
			m["KHO_ISSUER_KINDS"] = "https://idp.example=citizen,https://other.example=operator"
		}, "not a --trusted-issuer"},
		{"fail/unknown kind", nil, func(m map[string]string) { m["KHO_ISSUER_KINDS"] = "https://idp.example=root" }, "unknown principal kind"},
		{"fail/plain http key set outside dev", nil, func(m map[string]string) {
			m["KHO_TRUSTED_ISSUER"] = "https://idp.example=http://idp.example/jwks.json"
		}, "https"},
		{"fail/malformed issuer", []string{"--trusted-issuer", "just-a-name"}, nil, "ISSUER=JWKS_URL"},
		{"fail/issuer jwks not a url", []string{"--trusted-issuer", "a=b"}, nil, "JWKS URL"},
		{"fail/missing config file", []string{"--config", "/nonexistent.json"}, nil, "config file"},
	}
	for _, tt := range fails {
		t.Run(tt.name, func(t *testing.T) {
			env := base()
			if tt.mod != nil {
				tt.mod(env)
			}
			_, err := LoadConfig(tt.args, getenv(env), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}

	badFiles := map[string]string{
		"fail/file not json":            `listen = "x"`,
		"fail/file with unknown key":    `{"listn": "127.0.0.1:1"}`,
		"fail/file with bad value":      `{"shutdown-timeout": "forever"}`,
		"fail/file naming a file again": `{"config": "other.json"}`,
	}
	for name, body := range badFiles {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.json")
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadConfig([]string{"--config", p}, getenv(base()), nil); err == nil || !strings.Contains(err.Error(), "config file") {
				t.Fatalf("error %v", err)
			}
		})
	}
}

func TestHelpDocumentsEveryOption(t *testing.T) {
	var out bytes.Buffer
	_, err := LoadConfig([]string{"-h"}, getenv(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	help := out.String()
	newFlagSet(&Config{}).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "-"+f.Name) {
			t.Errorf("khod -h does not document -%s", f.Name)
		}
		if f.Usage == "" {
			t.Errorf("-%s has no description", f.Name)
		}
	})
	if !strings.Contains(help, "KHO_DATABASE_URL") || !strings.Contains(help, "--config") {
		t.Errorf("khod -h does not explain the environment and the config file:\n%s", help)
	}
}

// The deployment example (deploy/systemd/khod.env.example) is a
// configuration khod accepts: every variable is one of its options, in
// the form it takes. Secret files are stood in for by the test's own.
func TestDeploymentExampleIsAccepted(t *testing.T) {
	b, err := os.ReadFile("../../deploy/systemd/khod.env.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not KEY=VALUE: %q", line)
		}
		if strings.HasSuffix(k, "_FILE") {
			v = filepath.Join(dir, filepath.Base(v))
			if err := os.WriteFile(v, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if strings.HasPrefix(k, "KHO_") {
			env[k] = v
		}
	}
	if len(env) < 10 {
		t.Fatalf("only %d options read from the example", len(env))
	}
	if _, err := LoadConfig(nil, func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Fatalf("khod refuses the deployment example: %v", err)
	}
}
