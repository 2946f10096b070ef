package postgres_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/internal/testenv"
	"kho/postgres"
)

func TestMigrationsEmbedded(t *testing.T) {
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.Version != i+1 || m.Name == "" || len(m.Checksum) != 64 || m.SQL == "" {
			t.Errorf("migration %d malformed: %+v", i, m)
		}
	}
}

func TestMigrateFreshSchema(t *testing.T) {
	db := testenv.DB(t, false)
	ctx := testenv.Context(t)

	st, err := db.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != 0 || st.UpToDate() {
		t.Fatalf("fresh schema status = %+v", st)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := postgres.Migrations()
	if len(applied) != len(ms) {
		t.Fatalf("applied %d of %d", len(applied), len(ms))
	}
	st, err = db.Status(ctx)
	if err != nil || !st.UpToDate() {
		t.Fatalf("after migrate: %+v, %v", st, err)
	}
	// Applying again is a no-op.
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %d, err %v", len(again), err)
	}
	// The tables landed in the test's schema, not in public.
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'subjects'`, db.Schema()).Scan(&n); err != nil || n != 1 {
		t.Fatalf("subjects table in %s: %d, %v", db.Schema(), n, err)
	}
}

func TestMigrateConcurrentReplicasApplyOnce(t *testing.T) {
	// Several khod replicas starting at once each call Migrate: every
	// migration must be applied exactly once and none may fail.
	url := testenv.DatabaseURL(t)
	schema := testenv.Schema(t)
	ctx := testenv.Context(t)
	const replicas = 4
	var wg sync.WaitGroup
	total := make([]int, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() {
			db, err := postgres.Open(ctx, url, postgres.WithSchema(schema), postgres.WithMaxConns(2))
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			applied, err := db.Migrate(ctx)
			total[i], errs[i] = len(applied), err
		})
	}
	wg.Wait()
	sum := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		sum += total[i]
	}
	ms, _ := postgres.Migrations()
	if sum != len(ms) {
		t.Fatalf("migrations applied %d times in all, want %d", sum, len(ms))
	}
}

func TestEditedMigrationIsRefused(t *testing.T) {
	db := testenv.DB(t, true)
	ctx := testenv.Context(t)
	if _, err := db.Pool.Exec(ctx, `UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Status(ctx); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("Status with an edited migration: %v, want conflict", err)
	}
	if _, err := db.Migrate(ctx); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("Migrate with an edited migration: %v, want conflict", err)
	}
}

func TestDatabaseNewerThanBinaryIsRefused(t *testing.T) {
	db := testenv.DB(t, true)
	ctx := testenv.Context(t)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("Migrate on a newer database: %v, want conflict", err)
	}
}

func TestInTxRollsBack(t *testing.T) {
	db := testenv.DB(t, true)
	ctx := testenv.Context(t)
	boom := errors.New("boom")
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO agencies (code, kind, name_vi, name_en) VALUES ('G01', 'x', 'x', 'x')`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx returned %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		_ = db.InTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO agencies (code, kind, name_vi, name_en) VALUES ('G02', 'x', 'x', 'x')`); err != nil {
				return err
			}
			panic("handler bug")
		})
	}()
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM agencies`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after rollback: %d, %v", n, err)
	}
	if err := db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO agencies (code, kind, name_vi, name_en) VALUES ('G03', 'x', 'x', 'x')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM agencies`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after commit: %d, %v", n, err)
	}
}

func TestOpenRejectsBadInput(t *testing.T) {
	ctx := testenv.Context(t)
	tests := []struct {
		name, url, schema, code string
	}{
		{"fail/malformed url", "postgres://%zz", "public", kho.EINVALID},
		{"fail/schema injection", testenv.DatabaseURL(t), `x"; DROP SCHEMA public; --`, kho.EINVALID},
		{"fail/unreachable", "postgres://kho:x@127.0.0.1:1/kho?connect_timeout=2", "public", kho.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := postgres.Open(ctx, tt.url, postgres.WithSchema(tt.schema))
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if kho.ErrorCode(err) != tt.code {
				t.Fatalf("code %s (%v), want %s", kho.ErrorCode(err), err, tt.code)
			}
		})
	}
}

func TestSubjectsTableRejectsMalformedIdentifiers(t *testing.T) {
	db := testenv.DB(t, true)
	ctx := testenv.Context(t)
	for _, tc := range []struct{ id, kind string }{
		{"12345", "citizen"},
		{"0101234567", "citizen"},    // enterprise code as a citizen
		{"001090000001", "business"}, // personal number as a business
	} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO subjects (id, kind, handle) VALUES ($1, $2, gen_random_uuid())`, tc.id, tc.kind)
		if err == nil {
			t.Errorf("subject %s/%s accepted", tc.id, tc.kind)
		}
	}
}
