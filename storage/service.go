package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/policies"
	"kho/postgres"
)

// Config is what the document service is built from.
type Config struct {
	DB     *postgres.DB
	Blobs  kho.BlobStore // must also be a kho.BlobRandomAccess and a kho.BlobLister
	Keys   kho.SubjectKeys
	Signer kho.ManifestSigner
	Logger *slog.Logger
	// Reuse decides fetches by agencies other than the issuer (consent,
	// legal bases). Without it, only owners and issuers read.
	Reuse kho.ReuseDecider
	// PDFSigner signs agency-issued PDFs on deposit (PAdES). Without it,
	// PDFs are stored as deposited.
	PDFSigner kho.PDFSigner

	// MaxSize bounds a document (default 2 GiB).
	MaxSize int64
	// MaxPDFSize bounds a PDF, which is held in memory to be checked
	// (default 64 MiB).
	MaxPDFSize int64
	// ObjectPrefix is prepended to object names (default "o/"). The
	// reconciler looks under it only.
	ObjectPrefix string
	// MaxInMemory bounds how many documents are held in memory at once to
	// be checked (PDFs, JSON, XML; default 4): past it, a deposit waits
	// briefly, then is answered EUNAVAILABLE.
	MaxInMemory int
	// MaxHold bounds how long a legal hold may last (default 5 years).
	MaxHold time.Duration
	// Consents, when set, revokes a store's consents in the transaction
	// that erases it.
	Consents ConsentEraser
}

// ConsentEraser ends every consent and pending request of a store in the
// erasure's transaction; consent.Service meets it.
type ConsentEraser interface {
	EraseStore(ctx context.Context, tx pgx.Tx, p kho.Principal, h kho.SubjectHandle) (int, error)
}

// Service is the warehouse's document store: it deposits, lists, reads,
// supersedes, revokes and erases documents, asking package policies who may
// and recording every access through package audit.
type Service struct {
	db      *postgres.DB
	blobs   kho.BlobStore
	ranges  kho.BlobRandomAccess
	lister  kho.BlobLister
	keys    kho.SubjectKeys
	signer  kho.ManifestSigner
	reuse   kho.ReuseDecider
	pdfSign kho.PDFSigner
	log     *slog.Logger
	maxSize int64
	maxPDF  int64
	prefix  string
	slots   chan struct{}
	budget  Budget
	maxHold time.Duration
	erasers ConsentEraser
	now     func() time.Time
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.DB == nil:
		return nil, kho.Errorf(kho.EINVALID, "storage: a database is required")
	case cfg.Blobs == nil:
		return nil, kho.Errorf(kho.EINVALID, "storage: a blob store is required")
	case cfg.Keys == nil:
		return nil, kho.Errorf(kho.EINVALID, "storage: subject keys are required")
	case cfg.Signer == nil:
		return nil, kho.Errorf(kho.EINVALID, "storage: a manifest signer is required")
	}
	ranges, ok := cfg.Blobs.(kho.BlobRandomAccess)
	if !ok {
		return nil, kho.Errorf(kho.EINVALID, "storage: the blob store must support random access")
	}
	lister, ok := cfg.Blobs.(kho.BlobLister)
	if !ok {
		return nil, kho.Errorf(kho.EINVALID, "storage: the blob store must support listing")
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = 2 << 30
	}
	if cfg.MaxPDFSize == 0 {
		cfg.MaxPDFSize = 64 << 20
	}
	if cfg.MaxSize < 1 || cfg.MaxPDFSize < 1 || cfg.MaxPDFSize > cfg.MaxSize {
		return nil, kho.Errorf(kho.EINVALID, "storage: size limits must be positive and the PDF limit at most the document limit")
	}
	if cfg.ObjectPrefix == "" {
		cfg.ObjectPrefix = "o/"
	}
	if checkName(cfg.ObjectPrefix+"x") != nil {
		return nil, kho.Errorf(kho.EINVALID, "storage: object prefix %q is not a plain path", cfg.ObjectPrefix)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInMemory == 0 {
		cfg.MaxInMemory = 4
	}
	if cfg.MaxHold == 0 {
		cfg.MaxHold = 5 * 365 * 24 * time.Hour
	}
	if cfg.MaxInMemory < 1 || cfg.MaxHold < 24*time.Hour {
		return nil, kho.Errorf(kho.EINVALID, "storage: MaxInMemory must be positive and MaxHold at least a day")
	}
	return &Service{
		db: cfg.DB, blobs: cfg.Blobs, ranges: ranges, lister: lister, keys: cfg.Keys, signer: cfg.Signer, reuse: cfg.Reuse, pdfSign: cfg.PDFSigner,
		log: cfg.Logger, maxSize: cfg.MaxSize, maxPDF: cfg.MaxPDFSize, prefix: cfg.ObjectPrefix, now: time.Now,
		slots: make(chan struct{}, cfg.MaxInMemory), budget: NewBudget(cfg.MaxInMemory * int(max(cfg.MaxPDFSize>>20, 1))), maxHold: cfg.MaxHold, erasers: cfg.Consents,
	}, nil
}

// newObjectName returns a random name: nothing about the document or its
// owner can be read from it.
func (s *Service) newObjectName() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return s.prefix + hex.EncodeToString(b)
}

// Resolve returns the handle of id's store to its owner's side or a
// registered agency, creating the store when it does not exist yet: the
// answer is the same for every well-formed number, so nobody learns whose
// store exists. Every resolution is recorded, and the owner sees it.
func (s *Service) Resolve(ctx context.Context, p kho.Principal, id kho.SubjectID) (kho.SubjectHandle, error) {
	if err := id.Validate(); err != nil {
		return "", kho.FieldErrorf("subject_id", "%s", kho.ErrorMessage(err))
	}
	st, err := postgres.StoreByID(ctx, s.db.Pool, p, id)
	if err != nil {
		return "", err
	}
	agency, err := postgres.AgencyOf(ctx, s.db.Pool, p)
	if err != nil {
		return "", err
	}
	if _, err := s.decide(ctx, p, audit.StoreResolved, policies.ResolveStore, policies.Resource{Store: st, Agency: agency}); err != nil {
		return "", err
	}
	h, _, err := postgres.EnsureStore(ctx, s.db.Pool, id)
	if err != nil {
		return "", err
	}
	ev := audit.Event{Action: audit.StoreResolved, Outcome: audit.Success, Actor: p, Subject: h, ActingFor: st.ActingFor()}
	if err := audit.RecordNow(ctx, s.db, ev); err != nil {
		return "", err
	}
	return h, nil
}

// StoreFor returns the facts of id's store (the caller's own when id is
// empty) once policies.Authorize admits action on it; a refusal is recorded
// against the store, so its owner sees it. The API's routes about "my"
// store (and a ward's, with on_behalf_of) come through here.
func (s *Service) StoreFor(ctx context.Context, p kho.Principal, action policies.Action, id kho.SubjectID) (*policies.Store, error) {
	if p.Kind != kho.PrincipalCitizen && p.Kind != kho.PrincipalBusinessRep {
		return nil, kho.Refusal(kho.EFORBIDDEN, policies.ReasonWrongRole, "only citizens and business representatives have a store of their own")
	}
	st, err := postgres.SelectedStore(ctx, s.db.Pool, p, action, id)
	if err != nil {
		return nil, err
	}
	if _, err := s.decide(ctx, p, string(action), action, policies.Resource{Store: st}); err != nil {
		return nil, err
	}
	return st, nil
}

// storeAndAgency loads what an agency-facing action on a store by handle is
// decided on: the store as p sees it (nil when none) and p's agency.
func (s *Service) storeAndAgency(ctx context.Context, p kho.Principal, h kho.SubjectHandle) (policies.Resource, error) {
	st, err := postgres.StoreByHandle(ctx, s.db.Pool, p, h)
	if err != nil {
		return policies.Resource{}, err
	}
	agency, err := postgres.AgencyOf(ctx, s.db.Pool, p)
	return policies.Resource{Store: st, Agency: agency}, err
}

// decide asks policies.Authorize and records a refusal (audit.Decide).
func (s *Service) decide(ctx context.Context, p kho.Principal, event string, a policies.Action, r policies.Resource) (policies.Decision, error) {
	return audit.Decide(ctx, s.db, p, event, a, r)
}

// documentColumns is the select list scanDocument reads.
const documentColumns = `d.id, d.subject_handle, d.type_code, d.name, d.number, d.issued_on, d.issuer, d.source, d.summary,
	d.valid_from, d.valid_until, d.scope, d.dossier_code, d.procedure_code, d.result_code, d.status, d.revoke_reason,
	d.media_type, d.size, d.sha256, d.chain_id, d.version, d.supersedes, d.superseded_by, d.created_at,
	d.object_name, d.wrapped_key, d.signature`

// docRow is a document with what reading it needs.
type docRow struct {
	kho.Document
	object    *string
	wrapped   *string
	signature string
	store     *policies.Store // the store it is in, as the caller sees it
	rawSHA    []byte
}

// scanDocument reads documentColumns, then, when st is given, the store's
// columns (postgres.StoreColumns).
func scanDocument(row pgx.Row, st *postgres.StoreScan) (*docRow, error) {
	var d docRow
	var issuer, dossier, procedure, result, reason *string
	var validFrom, validUntil *time.Time
	var issued time.Time
	var supersedes, supersededBy *string
	dest := []any{&d.ID, &d.Subject, &d.Type, &d.Name, &d.Number, &issued, &issuer, &d.Source, &d.Summary,
		&validFrom, &validUntil, &d.Scope, &dossier, &procedure, &result, &d.Status, &reason,
		&d.MediaType, &d.Size, &d.rawSHA, &d.ChainID, &d.Version, &supersedes, &supersededBy, &d.CreatedAt,
		&d.object, &d.wrapped, &d.signature}
	if st != nil {
		dest = append(dest, st.Targets()...)
	}
	err := row.Scan(dest...)
	if err != nil {
		return nil, err
	}
	d.IssueOn = kho.Date{Time: issued}
	if issuer != nil {
		d.Issuer = kho.AgencyCode(*issuer)
	}
	if validFrom != nil {
		d.ValidFrom = &kho.Date{Time: *validFrom}
	}
	if validUntil != nil {
		d.ValidUntil = &kho.Date{Time: *validUntil}
	}
	d.DossierCode = kho.DossierCode(deref(dossier))
	d.ProcedureCode, d.ResultCode, d.RevokeReason = deref(procedure), deref(result), deref(reason)
	if supersedes != nil {
		id := kho.DocumentID(*supersedes)
		d.Supersedes = &id
	}
	if supersededBy != nil {
		id := kho.DocumentID(*supersededBy)
		d.SupersededBy = &id
	}
	d.SHA256 = hex.EncodeToString(d.rawSHA)
	return &d, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// load reads one document with the facts of its store as p sees them,
// optionally locking it for update in tx. A missing document is nil, not
// an error: the decision about it is Authorize's.
func (s *Service) load(ctx context.Context, q postgres.RowQuerier, p kho.Principal, id kho.DocumentID, forUpdate bool) (*docRow, error) {
	if err := id.Validate(); err != nil {
		return nil, nil
	}
	sql := `SELECT ` + documentColumns + `, ` + postgres.StoreColumns("$2") + ` FROM documents d JOIN subjects s ON s.handle = d.subject_handle WHERE d.id = $1`
	if forUpdate {
		sql += ` FOR UPDATE OF d`
	}
	var st postgres.StoreScan
	d, err := scanDocument(q.QueryRow(ctx, sql, id, postgres.Person(p)), &st)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: read document", err)
	}
	d.store = st.Store(p)
	d.Status = d.EffectiveStatus(s.now())
	return d, nil
}

// loadFor loads a document and asks Authorize whether p may do a to it; a
// refusal (including "no such document") is recorded and returned.
func (s *Service) loadFor(ctx context.Context, p kho.Principal, event string, a policies.Action, id kho.DocumentID) (*docRow, policies.Decision, error) {
	d, err := s.load(ctx, s.db.Pool, p, id, false)
	if err != nil {
		return nil, policies.Decision{}, err
	}
	r := policies.Resource{}
	if a == policies.FetchDocument {
		// Read whether or not the document exists: a refusal costs the
		// same either way.
		if r.Agency, err = postgres.AgencyOf(ctx, s.db.Pool, p); err != nil {
			return nil, policies.Decision{}, err
		}
	}
	if d != nil {
		r.Document, r.Store = &d.Document, d.store
	}
	dec, err := s.decide(ctx, p, event, a, r)
	if err != nil {
		return nil, dec, err
	}
	return d, dec, nil
}

// Get returns a document's metadata to those who may read it, and records the
// access.
func (s *Service) Get(ctx context.Context, p kho.Principal, id kho.DocumentID) (*kho.Document, error) {
	return s.metadata(ctx, p, audit.DocumentMetadata, policies.ReadDocument, id)
}

// Deposited answers the retry of p's deposit that made id (an
// Idempotency-Key's committed result) with its metadata, as the deposit
// did: a token that may deposit but not read gets what it was told.
// It is recorded as such, not as a read.
func (s *Service) Deposited(ctx context.Context, p kho.Principal, id kho.DocumentID) (*kho.Document, error) {
	return s.metadata(ctx, p, audit.DepositAnswered, policies.AnswerDeposit, id)
}

func (s *Service) metadata(ctx context.Context, p kho.Principal, event string, a policies.Action, id kho.DocumentID) (*kho.Document, error) {
	d, _, err := s.loadFor(ctx, p, event, a, id)
	if err != nil {
		return nil, err
	}
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: event, Outcome: audit.Success, Actor: p, Subject: d.Subject, Document: d.ID,
		ActingFor: d.store.ActingFor()}); err != nil {
		return nil, err
	}
	return &d.Document, nil
}
