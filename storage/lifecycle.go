package storage

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/policies"
)

// Revoke withdraws a document its issuer (or, if self-declared, its owner)
// no longer stands by. The reason is kept and shown to readers.
func (s *Service) Revoke(ctx context.Context, p kho.Principal, id kho.DocumentID, reason string) (*kho.Document, error) {
	reason = strings.TrimSpace(reason)
	if n := utf8.RuneCountInString(reason); n < 3 || n > 1000 || !utf8.ValidString(reason) {
		return nil, kho.Errorf(kho.EINVALID, "a revocation needs a reason of 3 to 1000 characters")
	}
	d, err := s.load(ctx, s.db.Pool, id, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, p, audit.DocumentRevoked, d, policies.CanChange(p, d.owner, &d.Document)); err != nil {
		return nil, err
	}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		cur, err := s.load(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if cur.Status != kho.StatusValid && cur.Status != kho.StatusExpired {
			return kho.Errorf(kho.ECONFLICT, "only a current document can be revoked; this one is %s", cur.Status)
		}
		if _, err := tx.Exec(ctx, `UPDATE documents SET status = 'revoked', revoke_reason = $2, status_changed_at = now() WHERE id = $1`, id, reason); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: revoke document", err)
		}
		if err := audit.Record(ctx, tx, audit.Event{Action: audit.DocumentRevoked, Outcome: audit.Success, Actor: p, Subject: d.Subject, Document: d.ID,
			Details: map[string]any{"reason": reason}}); err != nil {
			return err
		}
		return notify(ctx, tx, audit.DocumentRevoked, d.Subject, map[string]any{"document_id": d.ID})
	})
	if err != nil {
		return nil, err
	}
	d.Status, d.RevokeReason = kho.StatusRevoked, reason
	return &d.Document, nil
}

// Hold is a legal hold on a store.
type Hold struct {
	ID     string         `json:"id"`
	Agency kho.AgencyCode `json:"agency"`
	Reason string         `json:"reason"`
	Until  *time.Time     `json:"until,omitempty"`
}

// PlaceHold records that an agency must keep a store's records: while it
// applies, the store cannot be erased.
func (s *Service) PlaceHold(ctx context.Context, p kho.Principal, h kho.SubjectHandle, reason string, until *time.Time) (*Hold, error) {
	agency, err := policies.CanHold(p)
	if err != nil {
		return nil, err
	}
	reason = strings.TrimSpace(reason)
	if n := utf8.RuneCountInString(reason); n < 3 || n > 1000 {
		return nil, kho.Errorf(kho.EINVALID, "a legal hold needs a reason of 3 to 1000 characters")
	}
	if until != nil && until.Before(s.now()) {
		return nil, kho.Errorf(kho.EINVALID, "a legal hold cannot end in the past")
	}
	if err := h.Validate(); err != nil {
		return nil, kho.Errorf(kho.ENOTFOUND, "no such store")
	}
	if _, err := s.subjectBy(ctx, `handle = $1`, h); err != nil {
		return nil, err
	}
	hold := &Hold{ID: uuid.NewString(), Agency: agency, Reason: reason, Until: until}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO legal_holds (id, subject_handle, agency, reason, until) VALUES ($1, $2, $3, $4, $5)`,
			hold.ID, h, string(agency), reason, until); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: place legal hold", err)
		}
		return audit.Record(ctx, tx, audit.Event{Action: audit.SubjectLegalHold, Outcome: audit.Success, Actor: p, Subject: h,
			Details: map[string]any{"hold_id": hold.ID}})
	})
	if err != nil {
		return nil, err
	}
	return hold, nil
}

// ReleaseHold ends a legal hold; only the agency that placed it may.
func (s *Service) ReleaseHold(ctx context.Context, p kho.Principal, h kho.SubjectHandle, holdID string) error {
	agency, err := policies.CanHold(p)
	if err != nil {
		return err
	}
	if _, err := uuid.Parse(holdID); err != nil || h.Validate() != nil {
		return kho.Errorf(kho.ENOTFOUND, "no such legal hold")
	}
	return s.db.InTx(ctx, func(tx pgx.Tx) error {
		var holder string
		var released *time.Time
		err := tx.QueryRow(ctx, `SELECT agency, released_at FROM legal_holds WHERE id = $1 AND subject_handle = $2 FOR UPDATE`, holdID, h).Scan(&holder, &released)
		if errors.Is(err, pgx.ErrNoRows) {
			return kho.Errorf(kho.ENOTFOUND, "no such legal hold")
		}
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: read legal hold", err)
		}
		if holder != string(agency) {
			return kho.Errorf(kho.EFORBIDDEN, "only the agency that placed a legal hold may release it")
		}
		if released != nil {
			return kho.Errorf(kho.ECONFLICT, "the legal hold was already released")
		}
		if _, err := tx.Exec(ctx, `UPDATE legal_holds SET released_at = now() WHERE id = $1`, holdID); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: release legal hold", err)
		}
		return audit.Record(ctx, tx, audit.Event{Action: audit.SubjectHoldRelease, Outcome: audit.Success, Actor: p, Subject: h,
			Details: map[string]any{"hold_id": holdID}})
	})
}

// Erase crypto-shreds a store: its Transit key is deleted, so every copy of
// its ciphertext, backups included, becomes unreadable; its objects are
// removed; its document rows stay as tombstones without content, and the audit
// trail keeps the event. It is refused while a legal hold applies. Running it
// again finishes an erasure that was interrupted.
func (s *Service) Erase(ctx context.Context, p kho.Principal, h kho.SubjectHandle) (int, error) {
	if err := h.Validate(); err != nil {
		return 0, kho.Errorf(kho.ENOTFOUND, "no such store")
	}
	subj, err := s.subjectBy(ctx, `handle = $1`, h)
	if err != nil {
		return 0, err
	}
	if err := policies.CanErase(p, subj.owner()); err != nil {
		return 0, s.authorize(ctx, p, audit.SubjectErased, nil, err)
	}
	var objects []string
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM subjects WHERE handle = $1 FOR UPDATE`, h); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: lock subject", err)
		}
		var agency string
		var until *time.Time
		err := tx.QueryRow(ctx, `SELECT agency, until FROM legal_holds
			WHERE subject_handle = $1 AND released_at IS NULL AND (until IS NULL OR until > now())
			ORDER BY until DESC NULLS FIRST LIMIT 1`, h).Scan(&agency, &until)
		if err == nil {
			msg := "a legal hold by agency " + agency + " applies"
			if until != nil {
				msg += " until " + until.UTC().Format(time.DateOnly)
			}
			return kho.Errorf(kho.ECONFLICT, "%s: records a state agency must keep cannot be erased", msg)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: read legal holds", err)
		}
		rows, err := tx.Query(ctx, `UPDATE documents d SET status = 'erased', erased_at = now(), status_changed_at = now(),
				object_name = NULL, wrapped_key = NULL, key_version = NULL
			FROM documents old WHERE old.id = d.id AND d.subject_handle = $1 AND d.object_name IS NOT NULL
			RETURNING old.object_name`, h)
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: erase documents", err)
		}
		objects, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: erase documents", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE subjects SET erased_at = coalesce(erased_at, now()) WHERE handle = $1`, h); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: erase subject", err)
		}
		if err := audit.Record(ctx, tx, audit.Event{Action: audit.SubjectErased, Outcome: audit.Success, Actor: p, Subject: h,
			Details: map[string]any{"documents": len(objects)}}); err != nil {
			return err
		}
		return notify(ctx, tx, audit.SubjectErased, h, map[string]any{"documents": len(objects)})
	})
	if err != nil {
		return 0, err
	}
	if err := s.keys.Delete(ctx, h); err != nil {
		return 0, err
	}
	for _, o := range objects {
		// The key is gone; what fails here is unreadable and the
		// reconciler removes it.
		if err := s.blobs.Delete(ctx, o); err != nil {
			s.log.WarnContext(ctx, "erased object not removed; the reconciler will", "object", o, "err", err.Error())
		}
	}
	return len(objects), nil
}

// SubjectHandle returns the handle of id's store with no access decision: for
// the operator's CLI only, never behind an API route.
func (s *Service) SubjectHandle(ctx context.Context, id kho.SubjectID) (kho.SubjectHandle, error) {
	r, err := s.subjectBy(ctx, `id = $1`, id)
	if err != nil {
		return "", err
	}
	return r.handle, nil
}

// RotateKey adds a version to a subject's key: later deposits use it; earlier
// file keys keep their version until RewrapAll.
func (s *Service) RotateKey(ctx context.Context, actor kho.Principal, h kho.SubjectHandle) error {
	if err := s.keys.Rotate(ctx, h); err != nil {
		return err
	}
	return audit.RecordNow(ctx, s.db, audit.Event{Action: audit.SubjectKeyRotated, Outcome: audit.Success, Actor: actor, Subject: h})
}

// RewrapProgress reports how a rewrap advances.
type RewrapProgress struct {
	Subjects, SubjectsDone int
	Keys                   int // file keys rewrapped so far
}

// RewrapAll rewraps every file key wrapped by an older version of its
// subject's key to the latest version, in batches of batch keys (one Vault
// call each), without touching any ciphertext. Once a subject has no older
// wrap left, its older key versions are retired. It can be stopped at any
// time and run again: it picks up what is left.
func (s *Service) RewrapAll(ctx context.Context, actor kho.Principal, batch int, progress func(RewrapProgress)) (RewrapProgress, error) {
	var pr RewrapProgress
	if batch < 1 || batch > 1000 {
		return pr, kho.Errorf(kho.EINVALID, "batch must be between 1 and 1000")
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT DISTINCT subject_handle FROM documents WHERE wrapped_key IS NOT NULL ORDER BY 1`)
	if err != nil {
		return pr, kho.WrapError(kho.EUNAVAILABLE, "storage: list subjects", err)
	}
	handles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return pr, kho.WrapError(kho.EUNAVAILABLE, "storage: list subjects", err)
	}
	pr.Subjects = len(handles)
	if progress == nil {
		progress = func(RewrapProgress) {}
	}
	for _, hs := range handles {
		n, err := s.rewrapSubject(ctx, actor, kho.SubjectHandle(hs), batch, func(k int) {
			pr.Keys += k
			progress(pr)
		})
		if err != nil {
			return pr, err
		}
		_ = n
		pr.SubjectsDone++
		progress(pr)
	}
	return pr, nil
}

func (s *Service) rewrapSubject(ctx context.Context, actor kho.Principal, h kho.SubjectHandle, batch int, done func(int)) (int, error) {
	latest, minDec, err := s.keys.Versions(ctx, h)
	if err != nil {
		return 0, err
	}
	total := 0
	for {
		rows, err := s.db.Pool.Query(ctx, `SELECT id, wrapped_key, key_version FROM documents
			WHERE subject_handle = $1 AND wrapped_key IS NOT NULL AND key_version < $2 ORDER BY id LIMIT $3`, h, latest, batch)
		if err != nil {
			return total, kho.WrapError(kho.EUNAVAILABLE, "storage: read wrapped keys", err)
		}
		type stale struct {
			id      string
			wrapped string
			version int
		}
		items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stale, error) {
			var x stale
			return x, r.Scan(&x.id, &x.wrapped, &x.version)
		})
		if err != nil {
			return total, kho.WrapError(kho.EUNAVAILABLE, "storage: read wrapped keys", err)
		}
		if len(items) == 0 {
			break
		}
		in := make([]kho.RewrapItem, len(items))
		for i, it := range items {
			in[i] = kho.RewrapItem{Wrapped: it.wrapped, AD: binding(kho.DocumentID(it.id), h)}
		}
		out, err := s.keys.Rewrap(ctx, h, in)
		if err != nil {
			return total, err
		}
		err = s.db.InTx(ctx, func(tx pgx.Tx) error {
			for i, it := range items {
				// Only if nobody changed the row meanwhile (erasure).
				if _, err := tx.Exec(ctx, `UPDATE documents SET wrapped_key = $2, key_version = $3 WHERE id = $1 AND wrapped_key = $4`,
					it.id, out[i].Wrapped, out[i].Version, it.wrapped); err != nil {
					return kho.WrapError(kho.EUNAVAILABLE, "storage: store rewrapped key", err)
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(items)
		done(len(items))
	}
	if minDec >= latest {
		return total, nil
	}
	// Retire the old versions under the subject's row lock: a deposit that
	// wrapped with an old version and has not committed yet will see the new
	// minimum and fail, rather than commit a wrap about to become unreadable.
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM subjects WHERE handle = $1 FOR UPDATE`, h); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: lock subject", err)
		}
		var left int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM documents WHERE subject_handle = $1 AND wrapped_key IS NOT NULL AND key_version < $2`, h, latest).Scan(&left); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: count wrapped keys", err)
		}
		if left > 0 {
			return kho.Errorf(kho.ECONFLICT, "new documents were deposited with an old key version during the rewrap; run it again")
		}
		if _, err := tx.Exec(ctx, `UPDATE subjects SET key_min_version = $2 WHERE handle = $1`, h, latest); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: record retired versions", err)
		}
		if err := s.keys.RetireBefore(ctx, h, latest); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Event{Action: audit.SubjectKeyRewrap, Outcome: audit.Success, Actor: actor, Subject: h,
			Details: map[string]any{"rewrapped": total, "key_version": latest}})
	})
	return total, err
}
