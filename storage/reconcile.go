package storage

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
)

// Reconcile removes objects that no document row refers to and that are
// older than grace: what a deposit left when its transaction failed, or an
// erasure when removing objects failed. grace must outlast the longest
// deposit, since a deposit's object exists before its row. Only one khod
// replica reconciles at a time. It returns how many objects it removed.
func (s *Service) Reconcile(ctx context.Context, grace time.Duration) (int, error) {
	if grace < 0 {
		return 0, kho.Errorf(kho.EINVALID, "grace must not be negative")
	}
	conn, err := s.db.Pool.Acquire(ctx)
	if err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "storage: reconcile", err)
	}
	defer conn.Release()
	lock := "kho-reconcile:" + s.db.Schema() + ":" + s.prefix
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, lock).Scan(&got); err != nil {
		return 0, kho.WrapError(kho.EUNAVAILABLE, "storage: reconcile lock", err)
	}
	if !got {
		return 0, nil // another replica is at it
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, lock) }()

	cutoff := s.now().Add(-grace)
	removed := 0
	deleted := map[string]bool{}
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		rows, err := conn.Query(ctx, `SELECT object_name FROM documents WHERE object_name = ANY($1)`, batch)
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: reconcile", err)
		}
		known, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: reconcile", err)
		}
		keep := make(map[string]bool, len(known))
		for _, k := range known {
			keep[k] = true
		}
		for _, name := range batch {
			if keep[name] {
				continue
			}
			if err := s.blobs.Delete(ctx, name); err != nil {
				return err
			}
			deleted[name] = true
			removed++
			if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.ObjectReclaimed, Outcome: audit.Success,
				Details: map[string]any{"object": name}}); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	err = s.lister.Walk(ctx, s.prefix, func(name string, modified time.Time) error {
		if modified.After(cutoff) {
			return nil
		}
		batch = append(batch, name)
		if len(batch) == 500 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return removed, err
	}
	if err := flush(); err != nil {
		return removed, err
	}
	if removed > 0 {
		s.log.InfoContext(ctx, "reconciler removed orphan objects", "count", removed)
	}
	// Uploads a crashed khod never finished recording: an incomplete
	// multipart upload holds MinIO's space but is no object to walk.
	rows, err := conn.Query(ctx, `SELECT object_name FROM pending_objects WHERE started_at < $1 ORDER BY started_at LIMIT 10000`, cutoff)
	if err != nil {
		return removed, kho.WrapError(kho.EUNAVAILABLE, "storage: reconcile", err)
	}
	pending, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return removed, kho.WrapError(kho.EUNAVAILABLE, "storage: reconcile", err)
	}
	uploads, _ := s.blobs.(kho.BlobUploads)
	abandoned := 0
	for _, name := range pending {
		if uploads != nil {
			if err := uploads.AbortUpload(ctx, name); err != nil {
				return removed, err
			}
		}
		// A completed object was removed by the walk above if no document
		// names it; one a document names is kept.
		if _, err := conn.Exec(ctx, `DELETE FROM pending_objects WHERE object_name = $1`, name); err != nil {
			return removed, kho.WrapError(kho.EUNAVAILABLE, "storage: reconcile", err)
		}
		if !deleted[name] {
			abandoned++
		}
	}
	if abandoned > 0 {
		removed += abandoned
		s.log.InfoContext(ctx, "reconciler abandoned unfinished uploads", "count", abandoned)
		if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.ObjectReclaimed, Outcome: audit.Success,
			Details: map[string]any{"unfinished_uploads": abandoned}}); err != nil {
			return removed, err
		}
	}
	return removed, nil
}
