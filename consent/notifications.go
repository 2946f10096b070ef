package consent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/policies"
	"kho/postgres"
)

// Notification is one change a store's owner is told of: a document
// deposited, superseded or revoked, a consent requested, granted, paused,
// resumed or revoked, the store erased. It is the outbox's row, which the
// same change wrote in its transaction.
type Notification struct {
	ID      int64           `json:"id"`
	Topic   string          `json:"topic"`
	At      time.Time       `json:"at"`
	Payload json.RawMessage `json:"payload"`
}

// Notifications lists a store's notifications, newest first: the owner's
// side reads them as it reads its access log (a guardian for a ward with
// onBehalfOf). The reading is recorded.
func (s *Service) Notifications(ctx context.Context, p kho.Principal, onBehalfOf kho.SubjectID, limit int) ([]Notification, error) {
	if limit < 0 || limit > 500 {
		return nil, kho.Errorf(kho.EINVALID, "limit must be between 1 and 500")
	}
	if limit == 0 {
		limit = 100
	}
	st, err := postgres.SelectedStore(ctx, s.db.Pool, p, policies.ReadAccessLog, onBehalfOf)
	if err != nil {
		return nil, err
	}
	if err := s.decide(ctx, p, "notifications.read", policies.ReadAccessLog, policies.Resource{Store: st}); err != nil {
		return nil, err
	}
	out := []Notification{}
	if !st.Exists {
		return out, nil
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT id, topic, created_at, payload FROM outbox WHERE subject_handle = $1 ORDER BY id DESC LIMIT $2`, st.Handle, limit)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read notifications", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) {
		var n Notification
		return n, r.Scan(&n.ID, &n.Topic, &n.At, &n.Payload)
	})
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read notifications", err)
	}
	return append(out, list...), nil
}
