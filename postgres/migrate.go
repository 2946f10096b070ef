package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"

	"kho"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one versioned change to the schema, embedded in the binary.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string // hex SHA-256 of SQL: an applied migration must never change
}

var migrationNameRE = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns the embedded migrations in version order. Versions start
// at 1 and have no gaps; a build that breaks this fails its tests.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: read embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		m := migrationNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("postgres: migration file %q is not named NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(migrationFiles, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("postgres: read migration %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(body)
		ms = append(ms, Migration{Version: v, Name: m[2], SQL: string(body), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("postgres: migration versions must run 1, 2, 3… without gaps; found %04d at position %d", m.Version, i+1)
		}
	}
	return ms, nil
}

// MigrationStatus says where the database stands against this binary.
type MigrationStatus struct {
	Current int // highest applied version, 0 for an empty database
	Latest  int // highest version this binary carries
}

// UpToDate reports whether every embedded migration is applied.
func (s MigrationStatus) UpToDate() bool { return s.Current == s.Latest }

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	checksum   text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Status compares the applied migrations with the embedded ones. It fails
// with ECONFLICT when an applied migration's text differs from the binary's,
// or when the database is newer than the binary.
func (db *DB) Status(ctx context.Context) (MigrationStatus, error) {
	ms, err := Migrations()
	if err != nil {
		return MigrationStatus{}, kho.WrapError(kho.EINTERNAL, "postgres: embedded migrations", err)
	}
	st := MigrationStatus{Latest: len(ms)}
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return st, kho.WrapError(kho.EUNAVAILABLE, "postgres: read migration state", err)
	}
	if !exists {
		return st, nil
	}
	applied, err := db.applied(ctx, db.Pool)
	if err != nil {
		return st, err
	}
	st.Current = len(applied)
	return st, checkApplied(ms, applied)
}

type appliedMigration struct {
	version  int
	checksum string
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (db *DB) applied(ctx context.Context, q querier) ([]appliedMigration, error) {
	rows, err := q.Query(ctx, `SELECT version, checksum FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read applied migrations", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (appliedMigration, error) {
		var a appliedMigration
		return a, r.Scan(&a.version, &a.checksum)
	})
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read applied migrations", err)
	}
	return out, nil
}

func checkApplied(ms []Migration, applied []appliedMigration) error {
	for i, a := range applied {
		if a.version != i+1 || i >= len(ms) {
			return kho.Errorf(kho.ECONFLICT, "postgres: database has migration %04d, which this binary does not know (it carries up to %04d); run a newer kho", a.version, len(ms))
		}
		if a.checksum != ms[i].Checksum {
			return kho.Errorf(kho.ECONFLICT, "postgres: applied migration %04d_%s differs from the one in this binary; migrations must never be edited once applied", ms[i].Version, ms[i].Name)
		}
	}
	return nil
}

// Migrate applies every pending migration, each in its own transaction, under
// an advisory lock so that several khod replicas starting together apply each
// migration once. It returns the migrations it applied.
func (db *DB) Migrate(ctx context.Context) ([]Migration, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "postgres: embedded migrations", err)
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: acquire connection", err)
	}
	defer conn.Release()
	lockKey := "kho-migrate:" + db.schema
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, lockKey); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: take migration lock", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, lockKey)
	}()
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: create migrations table", err)
	}
	applied, err := db.applied(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := checkApplied(ms, applied); err != nil {
		return nil, err
	}
	var done []Migration
	for _, m := range ms[len(applied):] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return done, kho.WrapError(kho.EINTERNAL, fmt.Sprintf("postgres: apply migration %04d_%s", m.Version, m.Name), err)
		}
		done = append(done, m)
	}
	return done, nil
}
