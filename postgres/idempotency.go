package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
)

// IdempotencyTTL is how long a key's first answer is kept.
const IdempotencyTTL = 24 * time.Hour

// Idempotent is what is known of an idempotency key.
type Idempotent struct {
	Fresh       bool   // the caller now owns the key and does the work
	Claim       string // when Fresh: the claim's id, for Heartbeat, Complete and Release
	Result      string // when Fresh: what the work of a claim taken over committed (see Begin)
	ResultHash  []byte // and the hash of the route and the first ResultLen bytes of its body
	ResultLen   int64
	Pending     bool   // another request with the key is at work
	Route       string // the route the key was first used on
	RequestHash []byte // of the route and the kept request's body,
	RequestLen  int64  // or of its first RequestLen bytes (0: the whole body)
	Status      int
	ContentType string
	Location    string
	Body        []byte
}

// Idempotency keeps idempotency keys in PostgreSQL.
type Idempotency struct {
	DB *DB
	// Abandoned is how long a pending key may go without a heartbeat
	// before a retry takes it over (its request died with its khod); the
	// request at work beats every HeartbeatEvery.
	Abandoned time.Duration
}

// Heartbeats of a request at work, and how long a key may miss them.
const (
	HeartbeatEvery   = 10 * time.Second
	DefaultAbandoned = 45 * time.Second
)

// Heartbeat says that the request holding claim is still at work.
func (s *Idempotency) Heartbeat(ctx context.Context, owner, key, claim string) error {
	if _, err := s.DB.Pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() WHERE owner = $1 AND key = $2 AND state = 'pending' AND claim = $3`,
		owner, key, claim); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "idempotency: heartbeat", err)
	}
	return nil
}

// ErrClaimLost is what Complete reports when the request's claim was taken
// over by a retry while it worked (its renewals had stopped for longer
// than Abandoned): the answer is not stored, the retry's stands.
var ErrClaimLost = kho.Errorf(kho.ECONFLICT, "idempotency: the key's claim was taken over by a retry")

// Begin claims key for owner on route, or reports what the key holds. A
// claim taken over from a request that committed its work before its khod
// died (RecordResult) comes with that work's result: the request answers
// from it rather than doing the work again.
func (s *Idempotency) Begin(ctx context.Context, owner, key, route string) (*Idempotent, error) {
	abandoned := s.Abandoned
	if abandoned == 0 {
		abandoned = DefaultAbandoned
	}
	claim := uuid.NewString()
	// A pending claim without heartbeats is taken over with what its work
	// committed (result); an expired key starts anew.
	var result *string
	var resultHash []byte
	var resultLen *int64
	err := s.DB.Pool.QueryRow(ctx, `WITH gone AS (DELETE FROM idempotency_keys WHERE owner = $1 AND created_at < now() - make_interval(secs => $4))
		INSERT INTO idempotency_keys (owner, key, route, state, claim) VALUES ($1, $2, $3, 'pending', $6)
		ON CONFLICT (owner, key) DO UPDATE SET route = EXCLUDED.route, created_at = now(), claim = EXCLUDED.claim,
			state = 'pending', request_hash = NULL, request_len = NULL, status = NULL, content_type = NULL, location = NULL, body = NULL,
			result = CASE WHEN idempotency_keys.created_at < now() - make_interval(secs => $4) THEN NULL ELSE idempotency_keys.result END,
			result_hash = CASE WHEN idempotency_keys.created_at < now() - make_interval(secs => $4) THEN NULL ELSE idempotency_keys.result_hash END,
			result_len = CASE WHEN idempotency_keys.created_at < now() - make_interval(secs => $4) THEN NULL ELSE idempotency_keys.result_len END
			WHERE idempotency_keys.state = 'pending' AND idempotency_keys.created_at < now() - make_interval(secs => $5)
			   OR idempotency_keys.created_at < now() - make_interval(secs => $4)
		RETURNING result, result_hash, result_len`,
		owner, key, route, IdempotencyTTL.Seconds(), abandoned.Seconds(), claim).Scan(&result, &resultHash, &resultLen)
	switch {
	case err == nil:
		r := &Idempotent{Fresh: true, Claim: claim, ResultHash: resultHash}
		if result != nil {
			r.Result = *result
		}
		if resultLen != nil {
			r.ResultLen = *resultLen
		}
		return r, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, kho.WrapError(kho.EUNAVAILABLE, "idempotency: claim the key", err)
	}
	var r Idempotent
	var state string
	var status *int
	var ctype, loc *string
	var reqLen *int64
	err = s.DB.Pool.QueryRow(ctx, `SELECT route, request_hash, request_len, state, status, content_type, location, body FROM idempotency_keys WHERE owner = $1 AND key = $2`,
		owner, key).Scan(&r.Route, &r.RequestHash, &reqLen, &state, &status, &ctype, &loc, &r.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, kho.Errorf(kho.ECONFLICT, "the Idempotency-Key was released meanwhile: retry")
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "idempotency: read the key", err)
	}
	r.Pending = state == "pending"
	if status != nil {
		r.Status = *status
	}
	if ctype != nil {
		r.ContentType = *ctype
	}
	if loc != nil {
		r.Location = *loc
	}
	if reqLen != nil {
		r.RequestLen = *reqLen
	}
	return &r, nil
}

// Complete stores the answer to replay, for requests whose route and body
// (its first requestLen bytes; 0: all of it) hash as requestHash.
func (s *Idempotency) Complete(ctx context.Context, owner, key, claim string, requestHash []byte, requestLen int64, status int, contentType, location string, body []byte) error {
	var reqLen *int64
	if requestLen > 0 {
		reqLen = &requestLen
	}
	tag, err := s.DB.Pool.Exec(ctx, `UPDATE idempotency_keys SET state = 'done', request_hash = $3, request_len = $9, status = $4, content_type = $5, location = $6, body = $7
		WHERE owner = $1 AND key = $2 AND state = 'pending' AND claim = $8`, owner, key, requestHash, status, contentType, location, body, claim, reqLen)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "idempotency: store the answer", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrClaimLost
	}
	return nil
}

// Release forgets a pending key whose request failed in a way a retry may
// fix (a dependency down), so that the retry does the work. A key whose
// work had committed (RecordResult) is not forgotten: it is left for the
// next retry to take over at once and answer from.
func (s *Idempotency) Release(ctx context.Context, owner, key, claim string) error {
	abandoned := s.Abandoned
	if abandoned == 0 {
		abandoned = DefaultAbandoned
	}
	_, err := s.DB.Pool.Exec(ctx, `WITH forgotten AS (
			DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 AND state = 'pending' AND claim = $3 AND result IS NULL)
		UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $4)
		WHERE owner = $1 AND key = $2 AND state = 'pending' AND claim = $3 AND result IS NOT NULL`,
		owner, key, claim, abandoned.Seconds()+1)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "idempotency: release the key", err)
	}
	return nil
}

type claimKey struct{}

type heldClaim struct {
	owner, key, claim string
	read              func() ([]byte, int64)
}

// WithClaim marks ctx as the work of the request holding an idempotency
// key's claim, for RecordResult; read tells the hash of the route and of
// the request's body as read so far, and how many bytes that is.
func WithClaim(ctx context.Context, owner, key, claim string, read func() ([]byte, int64)) context.Context {
	return context.WithValue(ctx, claimKey{}, heldClaim{owner, key, claim, read})
}

// ErrClaimTakenOver is what work under a claim gets when a retry took the
// claim over while it ran: the work must not commit, the retry's stands.
var ErrClaimTakenOver = kho.Errorf(kho.ECONFLICT, "this request's Idempotency-Key was taken over by a retry while it worked; the retry's answer stands")

// RecordResult writes, in the transaction of the work done under ctx's
// claim (if any), what the work committed (a document's id). It fails, so
// that the transaction rolls back, when the claim is no longer the
// request's.
func RecordResult(ctx context.Context, tx pgx.Tx, result string) error {
	c, ok := ctx.Value(claimKey{}).(heldClaim)
	if !ok {
		return nil
	}
	var sum []byte
	var n int64
	if c.read != nil {
		sum, n = c.read()
	}
	tag, err := tx.Exec(ctx, `UPDATE idempotency_keys SET result = $4, result_hash = $5, result_len = $6
		WHERE owner = $1 AND key = $2 AND claim = $3 AND state = 'pending'`,
		c.owner, c.key, c.claim, result, sum, n)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "idempotency: record the result", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrClaimTakenOver
	}
	return nil
}
