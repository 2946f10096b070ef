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
		{"audit", "verify"}, {"catalogue", "load"}, {"verify"}, {"policy", "explain"},
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
	for _, args := range [][]string{{"dev"}, {"dev", "nosuch"}, {"keys"}, {"version", "extra"}, {"dev", "token"}, {"policy", "explain", "--agency", "X"}} {
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
