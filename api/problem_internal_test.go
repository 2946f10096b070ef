package api

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"kho"
)

// An outage names its server: what an adapter named, or PostgreSQL when
// the driver's own error is in the chain (a real one here: nothing listens
// on the port).
func TestDependencyOfAnOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, "postgres://kho@127.0.0.1:1/kho?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var one int
	pgErr := pool.QueryRow(ctx, `SELECT 1`).Scan(&one)
	if pgErr == nil {
		t.Fatal("a query reached a server on port 1")
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{kho.WrapError(kho.EUNAVAILABLE, "consent: list", pgErr), kho.DependencyPostgreSQL},
		{kho.WrapError(kho.EINTEGRITY, "read", kho.Unavailable(kho.DependencyMinIO, "storage: get object", errors.New("reset"))), kho.DependencyMinIO},
		{kho.Unavailable(kho.DependencyVault, "vault: sign", nil), kho.DependencyVault},
		{kho.Errorf(kho.EUNAVAILABLE, "too many documents are being checked at once"), ""},
	} {
		if got := dependencyOf(tc.err); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

// A client's Expect header is read as Go's server reads it: 100-continue
// anywhere in its list.
func TestExpectsContinue(t *testing.T) {
	for v, want := range map[string]bool{
		"100-continue": true, "100-Continue": true, "foo, 100-continue": true, "100-continue ,foo": true,
		"": false, "foo": false, "100-continued": false,
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Expect", v)
		if got := expectsContinue(r); got != want {
			t.Errorf("Expect %q: %v, want %v", v, got, want)
		}
	}
}
