// Package postgres is kho's PostgreSQL adapter: the connection pool, the
// versioned migrations embedded in the binary, and the transaction helper the
// services (storage metadata, consent, audit) share so that a document row,
// its audit event and its notification commit together or not at all.
//
// facts.go loads what policies.Authorize decides on. It imports the root
// package and policies (for the fact types). Services keep their own SQL and are handed
// a *DB; they never open connections of their own.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"kho"
	"kho/breaker"
	"kho/internal/idleconn"
)

// DB is a pool of connections to kho's database, all with the same schema on
// their search path.
type DB struct {
	Pool   *pgxpool.Pool
	schema string
}

var _ kho.HealthChecker = (*DB)(nil)

// Option changes how Open connects.
type Option func(*options)

type options struct {
	schema   string
	maxConns int32
	tracer   pgx.QueryTracer
	idle     time.Duration
	breaker  *breaker.Breaker
	readOnly bool
}

// WithTracer has every statement traced (metrics).
func WithTracer(t pgx.QueryTracer) Option { return func(o *options) { o.tracer = t } }

// WithSchema puts every connection's search path on schema, creating it when
// missing. Tests use one schema each; production uses the default, public.
func WithSchema(schema string) Option { return func(o *options) { o.schema = schema } }

// WithIdleTimeout fails a statement whose connection moves no byte for d
// (khod's pool: a frozen PostgreSQL is an outage within d, not a request
// held until its deadline). Not for pools that run long statements, such
// as migrations or bulk loads.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idle = d } }

// WithBreaker puts b in front of the pool: a statement that fails without
// an answer from the server (a broken or silent connection, not an error
// PostgreSQL reported and not a request the caller cancelled) counts
// against it, one that gets an answer clears it, and while it is open
// taking a connection fails at once as a PostgreSQL outage.
func WithBreaker(b *breaker.Breaker) Option { return func(o *options) { o.breaker = b } }

// WithReadOnly opens a read replica: no schema is created, every
// transaction is read-only, and the server is not reached before the first
// statement (khod starts while its replica is down, reading from the
// primary meanwhile).
func WithReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithMaxConns bounds the pool (default: pgxpool's, 4 per CPU).
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open validates url, connects and checks that the server answers. It does
// not migrate; call Migrate for that.
func Open(ctx context.Context, url string, opts ...Option) (*DB, error) {
	o := options{schema: "public"}
	for _, opt := range opts {
		opt(&o)
	}
	if !schemaRE.MatchString(o.schema) {
		return nil, kho.Errorf(kho.EINVALID, "postgres: schema name %q is not a plain lower-case identifier", o.schema)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may echo the password: keep only the fact.
		return nil, kho.Errorf(kho.EINVALID, "postgres: database URL is malformed")
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
	}
	if o.tracer != nil {
		cfg.ConnConfig.Tracer = o.tracer
	}
	if b := o.breaker; b != nil {
		cfg.ConnConfig.Tracer = breakerTracer{b: b, next: cfg.ConnConfig.Tracer}
		refuse := func() error {
			if err := b.Check(); err != nil {
				return kho.Unavailable(kho.DependencyPostgreSQL, "postgres: "+err.Error(), err)
			}
			return nil
		}
		// Neither a pooled connection nor a new one while it is open.
		cfg.PrepareConn = func(context.Context, *pgx.Conn) (bool, error) { return true, refuse() }
		cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error { return refuse() }
	}
	if o.idle > 0 {
		cfg.ConnConfig.DialFunc = idleconn.Dial(&net.Dialer{KeepAlive: 5 * time.Minute}, o.idle)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = o.schema
	cfg.ConnConfig.RuntimeParams["application_name"] = "kho"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if o.readOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: replica", err)
		}
		return &DB{Pool: pool, schema: o.schema}, nil
	}
	if o.schema != "public" {
		if err := createSchema(ctx, url, o.schema); err != nil {
			return nil, err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: connect", err)
	}
	db := &DB{Pool: pool, schema: o.schema}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, kho.WrapError(kho.EUNAVAILABLE, fmt.Sprintf("postgres: cannot reach %s", redactedHost(url)), err)
	}
	return db, nil
}

// breakerTracer reports each statement's outcome to a breaker, then to the
// tracer it wraps.
type breakerTracer struct {
	b    *breaker.Breaker
	next pgx.QueryTracer
}

func (t breakerTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if t.next != nil {
		return t.next.TraceQueryStart(ctx, c, data)
	}
	return ctx
}

func (t breakerTracer) TraceQueryEnd(ctx context.Context, c *pgx.Conn, data pgx.TraceQueryEndData) {
	var pgErr *pgconn.PgError
	switch {
	case data.Err == nil || errors.As(data.Err, &pgErr) || errors.Is(data.Err, pgx.ErrNoRows):
		t.b.Done(false) // the server answered
	case noAnswer(ctx, data.Err):
		t.b.Done(true)
	}
	// Anything else (a value that did not scan, say) says nothing of the
	// server.
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, c, data)
	}
}

// noAnswer reports whether err is a statement or connection the server
// never answered: the connection broke, or a deadline passed while it was
// silent. A request the caller cancelled is not one.
func noAnswer(ctx context.Context, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// Batches are passed on to the wrapped tracer when it traces them.
func (t breakerTracer) TraceBatchStart(ctx context.Context, c *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		return bt.TraceBatchStart(ctx, c, data)
	}
	return ctx
}

func (t breakerTracer) TraceBatchQuery(ctx context.Context, c *pgx.Conn, data pgx.TraceBatchQueryData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchQuery(ctx, c, data)
	}
}

func (t breakerTracer) TraceBatchEnd(ctx context.Context, c *pgx.Conn, data pgx.TraceBatchEndData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchEnd(ctx, c, data)
	}
}

// TraceConnectStart and TraceConnectEnd count a connection that could not
// be made (refused, or a server that does not answer) against the breaker.
func (t breakerTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

func (t breakerTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if data.Err != nil && noAnswer(ctx, data.Err) {
		t.b.Done(true)
	}
}

// createSchema creates schema when missing. An existing schema is left
// alone without asking for CREATE on the database, which the application role
// lacks.
func createSchema(ctx context.Context, url, schema string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, fmt.Sprintf("postgres: cannot reach %s", redactedHost(url)), err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "postgres: look up schema", err)
	}
	if exists {
		return nil
	}
	// IF NOT EXISTS is not atomic: replicas starting together can race on the
	// catalogue's unique index. The loser's schema exists all the same.
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil &&
		!IsUniqueViolation(err) && !hasSQLState(err, "42P06") {
		return kho.WrapError(kho.EUNAVAILABLE, "postgres: create schema", err)
	}
	return nil
}

// RowQuerier is met by the pool and by a transaction, so a read can run in
// either.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Schema returns the schema the pool's connections use.
func (db *DB) Schema() string { return db.schema }

// Close releases every connection.
func (db *DB) Close() { db.Pool.Close() }

// Health pings the server.
func (db *DB) Health(ctx context.Context) error {
	if err := db.Pool.Ping(ctx); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "postgres: not reachable", err)
	}
	return nil
}

// InTx runs fn in one transaction, committing when fn returns nil and rolling
// back otherwise (including when fn panics).
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) (err error) {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "postgres: begin", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "postgres: commit", err)
	}
	return nil
}

// redactedHost names the server of a URL without its credentials, for
// messages.
func redactedHost(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "the database"
	}
	return fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}

// IsUniqueViolation reports whether err is PostgreSQL's unique_violation.
func IsUniqueViolation(err error) bool { return hasSQLState(err, "23505") }

func hasSQLState(err error, state string) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == state
}
