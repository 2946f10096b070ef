package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"kho/internal/testenv"
	"kho/postgres"
)

func runKho(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), err
}

func TestCommandErrorsAreOneLine(t *testing.T) {
	testenv.Stack(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"dev"}, "dev needs a command"},
		{[]string{"dev", "sideways"}, `unknown dev command "sideways"`},
		{[]string{"dev", "token"}, "--as is required"},
		{[]string{"dev", "token", "--as", "citizen:12345"}, "personal identification number"},
		{[]string{"dev", "token", "--as", "king:me"}, "--as must start with"},
		{[]string{"dev", "token", "--as", "citizen:001090000001", "--ttl", "48h"}, "--ttl"},
		{[]string{"dev", "up", "--fast"}, "flag provided but not defined: -fast"},
		{[]string{"demo", "plant"}, `use "kho demo seed"`},
		{[]string{"migrate", "--database-url", "postgres://kho:x@127.0.0.1:1/kho?connect_timeout=1"}, "cannot reach 127.0.0.1:1"},
		{[]string{"init"}, "--out is required"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runKho(t, tt.args...)
			if err == nil {
				t.Fatal("succeeded")
			}
			if line := errorLine(err); !strings.Contains(line, tt.want) || strings.Contains(line, "\n") {
				t.Fatalf("error %q: want one line naming %q", line, tt.want)
			}
		})
	}
}

func TestMigrateAndSeedAreIdempotent(t *testing.T) {
	schema := testenv.Schema(t)
	url := testenv.DatabaseURL(t)
	args := []string{"--database-url", url, "--database-schema", schema}
	if _, err := runKho(t, append([]string{"demo", "seed"}, args...)...); err == nil || !strings.Contains(err.Error(), "kho migrate first") {
		t.Fatalf("seed before migrate: %v", err)
	}
	if _, err := runKho(t, append([]string{"migrate", "--status"}, args...)...); err == nil || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("status of an empty schema: %v", err)
	}
	out, err := runKho(t, append([]string{"migrate"}, args...)...)
	if err != nil || !strings.Contains(out, "applied 0001_foundation") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	// The operator's migration is in the audit trail.
	db, err := postgres.Open(testenv.Context(t), url, postgres.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.Pool.QueryRow(testenv.Context(t), `SELECT count(*) FROM audit_events WHERE action = 'operator.migrated' AND actor_kind = 'operator'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration events: %d %v", n, err)
	}
	for range 2 {
		out, err = runKho(t, append([]string{"demo", "seed"}, args...)...)
		if err != nil || !strings.Contains(out, "4 citizens, 1 business, 3 agencies; catalogue") {
			t.Fatalf("seed: %v\n%s", err, out)
		}
	}
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	out, err = runKho(t, append([]string{"migrate", "--status"}, args...)...)
	if want := fmt.Sprintf("at migration %d of %d", len(ms), len(ms)); err != nil || !strings.Contains(out, want) {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

func TestDevEnvAndToken(t *testing.T) {
	st := testenv.Stack(t)
	out, err := runKho(t, "dev", "env")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "export KHO_VAULT_ROLE_ID='") || strings.Contains(out, st.VaultRootToken) || strings.Contains(out, st.MinIORootPassword) {
		t.Fatalf("dev env:\n%s", out)
	}
	tok, err := runKho(t, "dev", "token", "--as", "citizen:001090000001")
	if err != nil || strings.Count(strings.TrimSpace(tok), ".") != 2 {
		t.Fatalf("dev token: %v %q", err, tok)
	}
	// An agency's token comes from khod's token endpoint: without khod,
	// a clear error.
	if _, err := runKho(t, "dev", "token", "--as", "agency:000.06.16.G09", "--khod", "http://127.0.0.1:1"); err == nil ||
		!strings.Contains(err.Error(), "start it with kho dev khod") {
		t.Fatalf("agency token without khod: %v", err)
	}
	// Each check has 2 s, which other packages' tests on the same stack can
	// use up on a busy machine: a status is asked again a few times.
	var status string
	for try := 0; try < 5; try++ {
		if status, err = runKho(t, "dev", "status"); err == nil && strings.Count(status, " ok ") == 3 {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil || strings.Count(status, " ok ") != 3 {
		t.Fatalf("dev status: %v\n%s", err, status)
	}
}
