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
	"kho/postgres"
)

// Revoke withdraws a document its issuer (or, if self-declared, its owner)
// no longer stands by. The reason is kept and shown to readers.
func (s *Service) Revoke(ctx context.Context, p kho.Principal, id kho.DocumentID, reason string) (*kho.Document, error) {
	d, _, err := s.loadFor(ctx, p, audit.DocumentRevoked, policies.ChangeDocument, id)
	if err != nil {
		return nil, err
	}
	reason = strings.TrimSpace(reason)
	if n := utf8.RuneCountInString(reason); n < 3 || n > 1000 || !kho.PlainText(reason, true) {
		return nil, kho.FieldErrorf("reason", "a revocation needs a reason of 3 to 1000 characters of plain text (no control or invisible characters)")
	}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		cur, err := s.load(ctx, tx, p, id, true)
		if err != nil {
			return err
		}
		if cur == nil {
			return kho.Errorf(kho.ENOTFOUND, "document not found")
		}
		if cur.Status != kho.StatusValid && cur.Status != kho.StatusExpired {
			return kho.Errorf(kho.ECONFLICT, "only a current document can be revoked; this one is %s", cur.Status)
		}
		if _, err := tx.Exec(ctx, `UPDATE documents SET status = 'revoked', revoke_reason = $2, status_changed_at = now() WHERE id = $1`, id, reason); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: revoke document", err)
		}
		// The reason is free text: it stays with the document, shown to its
		// readers, and out of the immutable audit trail.
		if err := audit.Record(ctx, tx, audit.Event{Action: audit.DocumentRevoked, Outcome: audit.Success, Actor: p, Subject: d.Subject, Document: d.ID,
			ActingFor: d.store.ActingFor()}); err != nil {
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
	ID         string         `json:"id"`
	Agency     kho.AgencyCode `json:"agency"`
	LegalBasis string         `json:"legal_basis"`
	Reason     string         `json:"reason,omitempty"`
	Until      time.Time      `json:"until"`
	CreatedAt  time.Time      `json:"created_at"`
	ReleasedAt *time.Time     `json:"released_at,omitempty"`
}

// HoldRequest is what an agency states to place a hold: the legal basis (the
// number of the decision or the article that obliges it to keep the
// records), until when, and optionally why in its own words.
type HoldRequest struct {
	LegalBasis string     `json:"legal_basis" required:"true"`
	Reason     string     `json:"reason,omitempty"`
	Until      *time.Time `json:"until" required:"true"`
}

func textBetween(field, v string, lo, hi int) error {
	v = strings.TrimSpace(v)
	if n := utf8.RuneCountInString(v); n < lo || n > hi || !kho.PlainText(v, false) {
		return kho.FieldErrorf(field, "%s must be %d to %d characters of plain text (no control or direction-changing characters)", field, lo, hi)
	}
	return nil
}

// PlaceHold records that an agency must keep a store's records until a
// date, on a stated legal basis: while it applies, the store cannot be
// erased. The owner sees it (ListHolds); an erased store takes no hold.
func (s *Service) PlaceHold(ctx context.Context, p kho.Principal, h kho.SubjectHandle, req HoldRequest) (*Hold, error) {
	r, err := s.storeAndAgency(ctx, p, h)
	if err != nil {
		return nil, err
	}
	if _, err := s.decide(ctx, p, audit.SubjectLegalHold, policies.PlaceHold, r); err != nil {
		return nil, err
	}
	if err := s.checkHold(req); err != nil {
		// An attempt to hold a store is on its record, even a malformed one.
		if aerr := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.SubjectLegalHold, Outcome: audit.Denied, Actor: p, Subject: h, Reason: "invalid"}); aerr != nil {
			return nil, aerr
		}
		return nil, err
	}
	hold := &Hold{ID: uuid.NewString(), Agency: p.Agency, LegalBasis: strings.TrimSpace(req.LegalBasis), Reason: strings.TrimSpace(req.Reason),
		Until: req.Until.UTC().Truncate(time.Microsecond)}
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		// Erasure holds this row's lock while it runs: a hold cannot slip
		// in after an erasure committed.
		var erased bool
		if err := tx.QueryRow(ctx, `SELECT erased_at IS NOT NULL FROM subjects WHERE handle = $1 FOR SHARE`, h).Scan(&erased); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: lock subject", err)
		}
		if erased {
			return kho.Refusal(kho.ECONFLICT, policies.ReasonErased, "the store was erased; there is nothing left to hold")
		}
		if err := tx.QueryRow(ctx, `INSERT INTO legal_holds (id, subject_handle, agency, reason, legal_basis, until) VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
			hold.ID, h, string(p.Agency), hold.Reason, hold.LegalBasis, hold.Until).Scan(&hold.CreatedAt); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: place legal hold", err)
		}
		// The legal basis is a document number, not free text about a
		// person: it is recorded; the reason is not.
		return audit.Record(ctx, tx, audit.Event{Action: audit.SubjectLegalHold, Outcome: audit.Success, Actor: p, Subject: h, LegalBasis: hold.LegalBasis,
			Details: map[string]any{"hold_id": hold.ID, "until": hold.Until.Format(time.DateOnly)}})
	})
	if err != nil {
		return nil, err
	}
	return hold, nil
}

// checkHold checks what a hold states: a legal basis, an end within the
// maximum, plain text.
func (s *Service) checkHold(req HoldRequest) error {
	if err := textBetween("legal_basis", req.LegalBasis, 3, 200); err != nil {
		return err
	}
	if req.Reason != "" {
		if err := textBetween("reason", req.Reason, 3, 1000); err != nil {
			return err
		}
	}
	now := s.now()
	switch {
	case req.Until == nil:
		return kho.FieldErrorf("until", "until is required: a legal hold ends on a stated date")
	case !req.Until.After(now):
		return kho.FieldErrorf("until", "a legal hold cannot end in the past")
	case req.Until.After(now.Add(s.maxHold)):
		return kho.FieldErrorf("until", "a legal hold may last at most %d days; place a new one when it ends", int(s.maxHold.Hours()/24))
	}
	return nil
}

// ListHolds shows the owner's side every legal hold on their store, current
// or ended.
func (s *Service) ListHolds(ctx context.Context, p kho.Principal, id kho.SubjectID) ([]Hold, error) {
	st, err := s.StoreFor(ctx, p, policies.ListHolds, id)
	if err != nil {
		return nil, err
	}
	out := []Hold{}
	if !st.Exists {
		return out, nil
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT id, agency, coalesce(legal_basis, ''), reason, coalesce(until, 'infinity'), created_at, released_at
		FROM legal_holds WHERE subject_handle = $1 ORDER BY created_at DESC LIMIT 200`, st.Handle)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: list legal holds", err)
	}
	out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Hold, error) {
		var h Hold
		err := r.Scan(&h.ID, &h.Agency, &h.LegalBasis, &h.Reason, &h.Until, &h.CreatedAt, &h.ReleasedAt)
		return h, err
	})
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: list legal holds", err)
	}
	err = audit.RecordNow(ctx, s.db, audit.Event{Action: audit.HoldsListed, Outcome: audit.Success, Actor: p, Subject: st.Handle, ActingFor: st.ActingFor()})
	return out, err
}

// ReleaseHold ends a legal hold: the agency that placed it may, and so may
// an operator carrying out a decision, who must state why (kept with the
// hold, not in the audit trail: it is free text).
func (s *Service) ReleaseHold(ctx context.Context, p kho.Principal, h kho.SubjectHandle, holdID, reason string) error {
	if p.Kind == kho.PrincipalOperator {
		if err := textBetween("reason", reason, 3, 1000); err != nil {
			return kho.FieldErrorf("reason", "an operator releasing a legal hold states why: reason must be 3 to 1000 characters")
		}
	}
	st, err := postgres.StoreByHandle(ctx, s.db.Pool, p, h)
	if err != nil {
		return err
	}
	var holder string
	if kho.CanonicalUUID(holdID) && h.Validate() == nil {
		err := s.db.Pool.QueryRow(ctx, `SELECT agency FROM legal_holds WHERE id = $1 AND subject_handle = $2`, holdID, h).Scan(&holder)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: read legal hold", err)
		}
	}
	if _, err := s.decide(ctx, p, audit.SubjectHoldRelease, policies.ReleaseHold, policies.Resource{Store: st, Holder: kho.AgencyCode(holder)}); err != nil {
		return err
	}
	if holder == "" {
		return kho.Refusal(kho.ENOTFOUND, policies.ReasonNotFound, "legal hold not found")
	}
	return s.db.InTx(ctx, func(tx pgx.Tx) error {
		var released *time.Time
		if err := tx.QueryRow(ctx, `SELECT released_at FROM legal_holds WHERE id = $1 FOR UPDATE`, holdID).Scan(&released); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: read legal hold", err)
		}
		if released != nil {
			return kho.Errorf(kho.ECONFLICT, "the legal hold was already released")
		}
		by := string(p.Kind) + ":" + string(p.Agency) + string(p.Staff)
		if _, err := tx.Exec(ctx, `UPDATE legal_holds SET released_at = now(), released_by = $2, release_reason = nullif($3, '') WHERE id = $1`,
			holdID, by, strings.TrimSpace(reason)); err != nil {
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
	st, err := postgres.StoreByHandle(ctx, s.db.Pool, p, h)
	if err != nil {
		return 0, err
	}
	if _, err := s.decide(ctx, p, audit.SubjectErased, policies.EraseStore, policies.Resource{Store: st}); err != nil {
		return 0, err
	}
	var objects []string
	var consents int
	err = s.db.InTx(ctx, func(tx pgx.Tx) error {
		// This lock orders the erasure with deposits and holds on the same
		// store: they take it to share and re-check erased_at.
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
			return kho.Refusal(kho.ECONFLICT, "legal_hold", "%s: records a state agency must keep cannot be erased", msg)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: read legal holds", err)
		}
		// Tombstones keep the type, dates, issuer and hash (what the audit
		// trail refers to); what could identify the person or describe the
		// case goes: name, number, summary, scope, dossier and result codes,
		// reasons.
		rows, err := tx.Query(ctx, `UPDATE documents d SET status = 'erased', erased_at = now(), status_changed_at = now(),
				object_name = NULL, wrapped_key = NULL, key_version = NULL,
				name = '', number = '', summary = '', scope = '', dossier_code = NULL, result_code = NULL, revoke_reason = NULL
			FROM documents old WHERE old.id = d.id AND d.subject_handle = $1
			RETURNING old.object_name`, h)
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: erase documents", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[*string])
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: erase documents", err)
		}
		for _, n := range names {
			if n != nil {
				objects = append(objects, *n)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE subjects SET erased_at = coalesce(erased_at, now()), id = NULL WHERE handle = $1`, h); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: erase subject", err)
		}
		// Ended holds keep their agency, legal basis and dates; an agency's
		// words about the case go.
		if _, err := tx.Exec(ctx, `UPDATE legal_holds SET reason = '', release_reason = NULL WHERE subject_handle = $1`, h); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "storage: erase legal holds", err)
		}
		if s.erasers != nil {
			if consents, err = s.erasers.EraseStore(ctx, tx, p, h); err != nil {
				return err
			}
		}
		if err := audit.Record(ctx, tx, audit.Event{Action: audit.SubjectErased, Outcome: audit.Success, Actor: p, Subject: h, ActingFor: st.ActingFor(),
			Details: map[string]any{"documents": len(objects), "consents_revoked": consents}}); err != nil {
			return err
		}
		return notify(ctx, tx, audit.SubjectErased, h, map[string]any{"documents": len(objects)})
	})
	if kho.ErrorReason(err) == "legal_hold" {
		// The refusal is part of the store's record too.
		if aerr := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.SubjectErased, Outcome: audit.Denied, Actor: p, Subject: h,
			ActingFor: st.ActingFor(), Reason: "legal_hold"}); aerr != nil {
			return 0, aerr
		}
	}
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
	st, err := postgres.StoreByID(ctx, s.db.Pool, kho.Principal{}, id)
	if err != nil {
		return "", err
	}
	if !st.Exists {
		return "", kho.Errorf(kho.ENOTFOUND, "no such store")
	}
	return st.Handle, nil
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
