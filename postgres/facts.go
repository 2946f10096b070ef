package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/policies"
)

// The facts policies.Authorize decides on, read from PostgreSQL: how a caller
// stands to a store (self, a current guardianship, a current business
// representation), which agencies are registered and of what kind, and the
// catalogue's document types. Every service loads them here, so one
// relationship has one model everywhere.

// StoreColumns returns the select list that reads a store (aliased s) and
// the caller's delegations to it in one round trip; person is the
// placeholder ($n) bound to the calling person's identifier (or NULL).
// ScanStore reads it.
func StoreColumns(person string) string {
	return `s.id, s.kind, s.handle, s.erased_at IS NOT NULL,
	EXISTS (SELECT 1 FROM guardianships g JOIN subjects gs ON gs.handle = g.guardian_handle
		WHERE g.ward_handle = s.handle AND gs.id = ` + person + `
		AND g.valid_from <= current_date AND (g.valid_until IS NULL OR g.valid_until >= current_date)),
	(SELECT r.role FROM business_representatives r JOIN subjects pe ON pe.handle = r.person_handle
		WHERE r.business_handle = s.handle AND pe.id = ` + person + `
		AND r.valid_from <= now() AND (r.valid_until IS NULL OR r.valid_until > now())),
	EXISTS (SELECT 1 FROM guardianships g WHERE g.ward_handle = s.handle
		AND g.valid_from <= current_date AND (g.valid_until IS NULL OR g.valid_until >= current_date))`
}

// Person returns the argument to bind to StoreColumns' placeholder.
func Person(p kho.Principal) any {
	if p.Person == "" {
		return nil
	}
	return string(p.Person)
}

// StoreScan receives the columns of StoreColumns.
type StoreScan struct {
	id       *string
	kind     string
	handle   string
	erased   bool
	guardian bool
	role     *string
	ward     bool
}

// Targets returns the scan destinations, in StoreColumns' order.
func (x *StoreScan) Targets() []any {
	return []any{&x.id, &x.kind, &x.handle, &x.erased, &x.guardian, &x.role, &x.ward}
}

// Store turns what was scanned into the facts as p sees them.
func (x *StoreScan) Store(p kho.Principal) *policies.Store {
	st := &policies.Store{Exists: true, Kind: kho.SubjectKind(x.kind), Handle: kho.SubjectHandle(x.handle), Erased: x.erased}
	if x.id != nil {
		st.Subject = kho.SubjectID(*x.id)
	}
	role := ""
	if x.role != nil {
		role = *x.role
	}
	st.Capacity = capacity(p, st, x.guardian, role)
	now := time.Now()
	st.Ward = st.Kind == kho.SubjectCitizen && (x.ward || st.Subject.Minor(now))
	st.ChildMustConsent = st.Ward && st.Subject.ChildMustConsent(now)
	return st
}

// StoreByID returns the facts of subject id's store as p sees it. When the
// store does not exist yet, Exists is false and Capacity is what p would have
// (self for the citizen's own number).
func StoreByID(ctx context.Context, q RowQuerier, p kho.Principal, id kho.SubjectID) (*policies.Store, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	st, err := loadStore(ctx, q, p, `s.id = $1`, string(id))
	if err != nil || st != nil {
		return st, err
	}
	now := time.Now()
	st = &policies.Store{Subject: id, Kind: id.Kind()}
	st.Capacity = capacity(p, st, false, "")
	st.Ward = st.Kind == kho.SubjectCitizen && id.Minor(now)
	st.ChildMustConsent = st.Ward && id.ChildMustConsent(now)
	return st, nil
}

// SelectedStore returns the facts of the store a caller means by id: the
// caller's own when id is empty (a citizen's, or the represented
// business's), else the one named (a ward's, with on_behalf_of). A caller
// with no store of its own, or a malformed id, gets the refusal a is
// answered with; the store's facts still go to Authorize.
func SelectedStore(ctx context.Context, q RowQuerier, p kho.Principal, a policies.Action, id kho.SubjectID) (*policies.Store, error) {
	if id == "" {
		own, ok := p.ActsFor()
		if !ok {
			return nil, policies.Authorize(p, a, policies.Resource{}).Err()
		}
		id = own
	}
	if id.Validate() != nil {
		return nil, policies.NotFound("store")
	}
	return StoreByID(ctx, q, p, id)
}

// StoreByHandle returns the facts of the store with handle h as p sees it, or
// nil when there is none.
func StoreByHandle(ctx context.Context, q RowQuerier, p kho.Principal, h kho.SubjectHandle) (*policies.Store, error) {
	if h.Validate() != nil {
		return nil, nil
	}
	return loadStore(ctx, q, p, `s.handle = $1`, string(h))
}

func loadStore(ctx context.Context, q RowQuerier, p kho.Principal, where, arg string) (*policies.Store, error) {
	var x StoreScan
	err := q.QueryRow(ctx, `SELECT `+StoreColumns("$2")+` FROM subjects s WHERE `+where, arg, Person(p)).Scan(x.Targets()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read store", err)
	}
	return x.Store(p), nil
}

// EnsureStore creates subject id's store when missing and returns its
// handle and whether it was erased. One round trip: the no-op update makes
// RETURNING give the existing row.
func EnsureStore(ctx context.Context, q RowQuerier, id kho.SubjectID) (kho.SubjectHandle, bool, error) {
	if err := id.Validate(); err != nil {
		return "", false, err
	}
	var h kho.SubjectHandle
	var erased bool
	err := q.QueryRow(ctx, `INSERT INTO subjects (id, kind, handle) VALUES ($1, $2, gen_random_uuid())
		ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id RETURNING handle, erased_at IS NOT NULL`, id, id.Kind()).Scan(&h, &erased)
	if err != nil {
		return "", false, kho.WrapError(kho.EUNAVAILABLE, "postgres: create store", err)
	}
	return h, erased, nil
}

// capacity says how p stands to the store: the citizen's own, a ward's
// (guardianship current), or a business's (representation current and the
// token naming that business). Nothing else, and never a claim alone.
func capacity(p kho.Principal, st *policies.Store, guardian bool, role string) kho.Capacity {
	switch p.Kind {
	case kho.PrincipalCitizen:
		if st.Subject != "" && st.Subject == p.Person {
			return kho.CapacitySelf
		}
		if guardian {
			return kho.CapacityGuardian
		}
	case kho.PrincipalBusinessRep:
		if st.Subject == "" || st.Subject != p.Business {
			return kho.CapacityNone
		}
		switch role {
		case string(kho.CapacityLegalRep):
			return kho.CapacityLegalRep
		case string(kho.CapacityAuthorised):
			return kho.CapacityAuthorised
		}
	}
	return kho.CapacityNone
}

type memoKey struct{}

// memo keeps the catalogue and agency facts one request has read.
type memo struct {
	mu sync.Mutex
	m  map[string]any
}

// WithMemo returns ctx with a memo for AgencyOf and Procedure: within one
// request (a fetch decided first by storage, then by consent) each is read
// once. The facts then are those of the request's start; decisions about
// consents and documents still read PostgreSQL every time.
func WithMemo(ctx context.Context) context.Context {
	if _, ok := ctx.Value(memoKey{}).(*memo); ok {
		return ctx
	}
	return context.WithValue(ctx, memoKey{}, &memo{m: map[string]any{}})
}

// memoized returns the memo's value for key, loading it once.
func memoized[T any](ctx context.Context, key string, load func() (T, error)) (T, error) {
	m, ok := ctx.Value(memoKey{}).(*memo)
	if !ok {
		return load()
	}
	m.mu.Lock()
	v, hit := m.m[key]
	m.mu.Unlock()
	if hit {
		return v.(T), nil
	}
	v, err := load()
	if err != nil {
		return v.(T), err
	}
	m.mu.Lock()
	m.m[key] = v
	m.mu.Unlock()
	return v.(T), nil
}

// AgencyOf returns p's agency as registered, or nil when p acts for no
// agency or for one kho does not know.
func AgencyOf(ctx context.Context, q RowQuerier, p kho.Principal) (*policies.Agency, error) {
	if p.Kind != kho.PrincipalAgency && p.Kind != kho.PrincipalAgencyOfficer {
		return nil, nil
	}
	return memoized(ctx, "agency:"+string(p.Agency), func() (*policies.Agency, error) { return agencyOf(ctx, q, p) })
}

func agencyOf(ctx context.Context, q RowQuerier, p kho.Principal) (*policies.Agency, error) {
	a := &policies.Agency{Code: p.Agency}
	err := q.QueryRow(ctx, `SELECT kind FROM agencies WHERE code = $1`, string(p.Agency)).Scan(&a.Kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read agency", err)
	}
	return a, nil
}

// DocumentType returns the catalogue's entry for code, or nil.
func DocumentType(ctx context.Context, q RowQuerier, code string) (*policies.DocumentType, error) {
	t := &policies.DocumentType{Code: code}
	err := q.QueryRow(ctx, `SELECT name_vi, name_en, issuer_kinds, subject_kinds FROM document_types WHERE code = $1`, code).
		Scan(&t.NameVI, &t.NameEN, &t.IssuerKinds, &t.SubjectKinds)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read document type", err)
	}
	return t, nil
}

// Procedure returns the catalogue's procedure code with the document types
// it uses, or nil when there is none.
func Procedure(ctx context.Context, q RowQuerier, code string) (*policies.Procedure, error) {
	return memoized(ctx, "procedure:"+code, func() (*policies.Procedure, error) { return procedureOf(ctx, q, code) })
}

func procedureOf(ctx context.Context, q RowQuerier, code string) (*policies.Procedure, error) {
	p := &policies.Procedure{Code: code}
	err := q.QueryRow(ctx, `SELECT p.name_vi, p.name_en, p.handler_kinds,
			coalesce(array_agg(t.document_type_code ORDER BY t.document_type_code) FILTER (WHERE t.required), '{}'),
			coalesce(array_agg(t.document_type_code ORDER BY t.document_type_code) FILTER (WHERE NOT t.required), '{}')
		FROM procedures p LEFT JOIN procedure_document_types t ON t.procedure_code = p.code
		WHERE p.code = $1 GROUP BY p.code`, code).Scan(&p.NameVI, &p.NameEN, &p.HandlerKinds, &p.Requires, &p.Optional)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read catalogue", err)
	}
	return p, nil
}

// Delegation is a store a person may currently act for besides their own:
// a ward's (Kind "ward") or a business's they represent (Kind "business",
// with their Role).
type Delegation struct {
	Subject kho.SubjectID
	Kind    string
	Role    string
}

// Delegations lists the person's current delegations (guardianships and
// business representations within their validity), in the same terms as
// StoreColumns; erased stores are left out.
func Delegations(ctx context.Context, db *DB, person kho.SubjectID) ([]Delegation, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT w.id, 'ward', '' FROM guardianships g
			JOIN subjects gs ON gs.handle = g.guardian_handle JOIN subjects w ON w.handle = g.ward_handle
			WHERE gs.id = $1 AND w.id IS NOT NULL AND w.erased_at IS NULL
			AND g.valid_from <= current_date AND (g.valid_until IS NULL OR g.valid_until >= current_date)
		UNION ALL
		SELECT b.id, 'business', r.role FROM business_representatives r
			JOIN subjects pe ON pe.handle = r.person_handle JOIN subjects b ON b.handle = r.business_handle
			WHERE pe.id = $1 AND b.id IS NOT NULL AND b.erased_at IS NULL
			AND r.valid_from <= now() AND (r.valid_until IS NULL OR r.valid_until > now())
		ORDER BY 2 DESC, 1`, string(person))
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read delegations", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delegation, error) {
		var d Delegation
		return d, r.Scan(&d.Subject, &d.Kind, &d.Role)
	})
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "postgres: read delegations", err)
	}
	return out, nil
}
