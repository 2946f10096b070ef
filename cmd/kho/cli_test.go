package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kho/internal/testenv"
)

// Every command answers -h with its options and an example.
func TestEveryCommandHasHelpWithAnExample(t *testing.T) {
	for _, cmd := range [][]string{
		{"dev", "up"}, {"dev", "down"}, {"dev", "status"}, {"dev", "env"}, {"dev", "token"}, {"dev", "khod"},
		{"migrate"}, {"demo", "seed"}, {"init"}, {"keys", "rotate"}, {"keys", "rewrap"}, {"reconcile"},
		{"audit", "verify"}, {"catalogue", "load"}, {"verify"}, {"policy", "explain"}, {"agency", "register"}, {"agency", "retire-key"}, {"agency", "webhook"}, {"outbox", "list"}, {"outbox", "replay"}, {"receipt", "verify"}, {"bench"},
	} {
		name := strings.Join(cmd, " ")
		t.Run(name, func(t *testing.T) {
			out, err := runKho(t, append(cmd, "-h")...)
			if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "Usage of kho "+name) || !strings.Contains(out, "Example:\n  kho") && !strings.Contains(out, "Example:\n  eval") &&
				!strings.Contains(out, "Example:\n  VAULT_TOKEN") {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// Flags may come before or after a command's arguments, with the same
// result; a command line kho cannot parse is a usage error (exit 2), one
// that ran and failed is not.
func TestFlagsBeforeAndAfterArguments(t *testing.T) {
	schema := testenv.Schema(t)
	db := []string{"--database-url", testenv.DatabaseURL(t), "--database-schema", schema}
	if _, err := runKho(t, append([]string{"migrate"}, db...)...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	catalogue := filepath.Join(testenv.RepoDir(t), "policies", "catalogue", "catalogue.json")
	export := filepath.Join(dir, "missing.jsonl")
	pdf := filepath.Join(dir, "missing.pdf")
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("kho.local/audit+00000000+AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	tests := []struct {
		name   string
		before []string
		after  []string
		ok     bool
		want   string // in the error, when not ok
	}{
		{"catalogue load", append(append([]string{"catalogue", "load"}, db...), catalogue), append([]string{"catalogue", "load", catalogue}, db...), true, ""},
		{"audit verify", []string{"audit", "verify", "--key-file", key, export}, []string{"audit", "verify", export, "--key-file", key}, false, "missing.jsonl"},
		{"verify", []string{"verify", "--json", "--root", key, pdf}, []string{"verify", pdf, "--json", "--root", key}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errBefore := runKho(t, tt.before...)
			_, errAfter := runKho(t, tt.after...)
			for i, err := range []error{errBefore, errAfter} {
				var ue *usageError
				if errors.As(err, &ue) {
					t.Fatalf("flags %s the argument: a usage error: %v", []string{"before", "after"}[i], err)
				}
				if tt.ok != (err == nil) || (!tt.ok && tt.want != "" && !strings.Contains(err.Error(), tt.want)) {
					t.Fatalf("flags %s the argument: %v", []string{"before", "after"}[i], err)
				}
			}
			if (errBefore == nil) != (errAfter == nil) || (errBefore != nil && errorLine(errBefore) != errorLine(errAfter)) {
				t.Fatalf("different results:\n before: %v\n after:  %v", errBefore, errAfter)
			}
		})
	}
	// Interleaved, and after "--" everything is an argument.
	if _, err := runKho(t, "catalogue", "load", "--database-url", db[1], catalogue, "--database-schema", schema); err != nil {
		t.Fatalf("interleaved: %v", err)
	}
	var ue *usageError
	for _, args := range [][]string{{"verify", "a.pdf", "b.pdf"}, {"catalogue", "load", "a", "b"}, {"audit", "verify"}, {"frobnicate"}, {"migrate", "--nope"}, {"dev", "up", "extra"}} {
		if _, err := runKho(t, args...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	for _, args := range [][]string{{"dev"}, {"dev", "nosuch"}, {"keys"}, {"version", "extra"}, {"dev", "token"}, {"policy", "explain", "--agency", "X"},
		{"bench", "--sizes", "lots"}, {"bench", "--sizes", "0MiB"}, {"bench", "--concurrency", "0"}, {"bench", "--ops", "fetch,teleport"},
		{"bench", "--ops", "fetch", "--profile", "deposit"}, {"bench", "--duration", "1ms"}, {"bench", "--memory", "big"}} {
		if _, err := runKho(t, args...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if out, err := runKho(t, "version"); err != nil || !strings.HasPrefix(out, "kho ") {
		t.Fatalf("version: %q %v", out, err)
	}
	// A group's -h is help, not an error.
	for _, g := range []string{"dev", "keys", "audit", "catalogue", "policy", "demo"} {
		if out, err := runKho(t, g, "-h"); err != nil || !strings.Contains(out, "kho "+g) {
			t.Errorf("kho %s -h: %v", g, err)
		}
	}
}

// An operator registers an agency system's public keys from a JWKS file
// and retires one; a private key, an unknown agency and a key retired
// twice are refused with one plain line.
func TestAgencyKeyCommands(t *testing.T) {
	schema := testenv.Schema(t)
	db := []string{"--database-url", testenv.DatabaseURL(t), "--database-schema", schema}
	if _, err := runKho(t, append([]string{"migrate"}, db...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := runKho(t, append([]string{"demo", "seed"}, db...)...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	pub := write("pub.json", `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"police-1","use":"sig","alg":"ES256"}]}`)
	priv := write("priv.json", `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI","kid":"police-2","use":"sig","alg":"ES256"}]}`)
	out, err := runKho(t, append([]string{"agency", "register", "--code", "000.00.15.H29", "--jwks", pub}, db...)...)
	if err != nil || !strings.Contains(out, "registered 1 key(s): [police-1]") {
		t.Fatalf("register: %v %s", err, out)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"private key":     {[]string{"agency", "register", "--code", "000.00.15.H29", "--jwks", priv}, "is a private key"},
		"unknown agency":  {[]string{"agency", "register", "--code", "000.99.99.Z99", "--jwks", pub}, "not registered in kho"},
		"same kid":        {[]string{"agency", "register", "--code", "000.00.15.H29", "--jwks", pub}, "already has a key police-1"},
		"not a JWKS":      {[]string{"agency", "register", "--code", "000.00.15.H29", "--jwks", write("x.json", "hello")}, "is not a JWKS"},
		"unknown kid":     {[]string{"agency", "retire-key", "--code", "000.00.15.H29", "--kid", "nope"}, "has no current key nope"},
		"missing --jwks":  {[]string{"agency", "register", "--code", "000.00.15.H29"}, "--code and --jwks are required"},
		"unknown command": {[]string{"agency", "frobnicate"}, "unknown agency command"},
	} {
		t.Run("fail/"+name, func(t *testing.T) {
			if _, err := runKho(t, append(tc.args, db...)...); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if out, err := runKho(t, append([]string{"agency", "retire-key", "--code", "000.00.15.H29", "--kid", "police-1"}, db...)...); err != nil || !strings.Contains(out, "retired") {
		t.Fatalf("retire: %v %s", err, out)
	}
}
