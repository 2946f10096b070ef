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
	return &Service{
		db: cfg.DB, blobs: cfg.Blobs, ranges: ranges, lister: lister, keys: cfg.Keys, signer: cfg.Signer, reuse: cfg.Reuse, pdfSign: cfg.PDFSigner,
		log: cfg.Logger, maxSize: cfg.MaxSize, maxPDF: cfg.MaxPDFSize, prefix: cfg.ObjectPrefix, now: time.Now,
	}, nil
}

// newObjectName returns a random name: nothing about the document or its
// owner can be read from it.
func (s *Service) newObjectName() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return s.prefix + hex.EncodeToString(b)
}

// subjectRow is a store's owner as PostgreSQL knows it.
type subjectRow struct {
	id         kho.SubjectID
	handle     kho.SubjectHandle
	erased     bool
	minVersion int
}

func (r subjectRow) owner() policies.Owner { return policies.Owner{Subject: r.id} }

// ensureSubject returns the subject's row, creating the store on first use.
func (s *Service) ensureSubject(ctx context.Context, id kho.SubjectID) (subjectRow, error) {
	if err := id.Validate(); err != nil {
		return subjectRow{}, err
	}
	// One round trip: the no-op update makes RETURNING give the existing row.
	var r subjectRow
	var erased *time.Time
	err := s.db.Pool.QueryRow(ctx, `INSERT INTO subjects (id, kind, handle) VALUES ($1, $2, gen_random_uuid())
		ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id RETURNING id, handle, erased_at, key_min_version`, id, id.Kind()).
		Scan(&r.id, &r.handle, &erased, &r.minVersion)
	if err != nil {
		return subjectRow{}, kho.WrapError(kho.EUNAVAILABLE, "storage: create subject", err)
	}
	r.erased = erased != nil
	return r, nil
}

func (s *Service) subjectBy(ctx context.Context, where string, arg any) (subjectRow, error) {
	var r subjectRow
	var erased *time.Time
	err := s.db.Pool.QueryRow(ctx, `SELECT id, handle, erased_at, key_min_version FROM subjects WHERE `+where, arg).
		Scan(&r.id, &r.handle, &erased, &r.minVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, kho.Errorf(kho.ENOTFOUND, "no such store")
	}
	if err != nil {
		return r, kho.WrapError(kho.EUNAVAILABLE, "storage: read subject", err)
	}
	r.erased = erased != nil
	return r, nil
}

// Resolve returns the handle of id's store, for the owner or an agency; other
// callers get EFORBIDDEN, and an unknown subject ENOTFOUND.
func (s *Service) Resolve(ctx context.Context, p kho.Principal, id kho.SubjectID) (kho.SubjectHandle, error) {
	if err := id.Validate(); err != nil {
		return "", err
	}
	if _, err := policies.CanList(p, policies.Owner{Subject: id}); err != nil {
		return "", err
	}
	r, err := s.subjectBy(ctx, `id = $1`, id)
	if err != nil {
		return "", err
	}
	return r.handle, nil
}

// documentColumns is the select list scanDocument reads.
const documentColumns = `d.id, d.subject_handle, d.type_code, d.name, d.number, d.issued_on, d.issuer, d.source, d.summary,
	d.valid_from, d.valid_until, d.scope, d.dossier_code, d.procedure_code, d.result_code, d.status, d.revoke_reason,
	d.media_type, d.size, d.sha256, d.chain_id, d.version, d.supersedes, d.superseded_by, d.created_at,
	d.object_name, d.wrapped_key, d.signature, s.id`

// docRow is a document with what reading it needs.
type docRow struct {
	kho.Document
	object    *string
	wrapped   *string
	signature string
	owner     policies.Owner
	rawSHA    []byte
}

func scanDocument(row pgx.Row) (*docRow, error) {
	var d docRow
	var issuer, dossier, procedure, result, reason *string
	var validFrom, validUntil *time.Time
	var issued time.Time
	var supersedes, supersededBy *string
	var owner string
	err := row.Scan(&d.ID, &d.Subject, &d.Type, &d.Name, &d.Number, &issued, &issuer, &d.Source, &d.Summary,
		&validFrom, &validUntil, &d.Scope, &dossier, &procedure, &result, &d.Status, &reason,
		&d.MediaType, &d.Size, &d.rawSHA, &d.ChainID, &d.Version, &supersedes, &supersededBy, &d.CreatedAt,
		&d.object, &d.wrapped, &d.signature, &owner)
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
	d.owner = policies.Owner{Subject: kho.SubjectID(owner)}
	return &d, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// load reads one document, optionally locking it for update in tx.
func (s *Service) load(ctx context.Context, q postgres.RowQuerier, id kho.DocumentID, forUpdate bool) (*docRow, error) {
	if err := id.Validate(); err != nil {
		return nil, kho.Errorf(kho.ENOTFOUND, "document not found")
	}
	sql := `SELECT ` + documentColumns + ` FROM documents d JOIN subjects s ON s.handle = d.subject_handle WHERE d.id = $1`
	if forUpdate {
		sql += ` FOR UPDATE OF d`
	}
	d, err := scanDocument(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, kho.Errorf(kho.ENOTFOUND, "document not found")
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "storage: read document", err)
	}
	d.Status = d.EffectiveStatus(s.now())
	return d, nil
}

// authorize applies a policy decision and records a refusal.
func (s *Service) authorize(ctx context.Context, p kho.Principal, action string, d *docRow, decision error) error {
	if decision == nil {
		return nil
	}
	ev := audit.Event{Action: action, Outcome: audit.Denied, Actor: p, Details: map[string]any{"reason": kho.ErrorMessage(decision)}}
	if d != nil {
		ev.Subject, ev.Document = d.Subject, d.ID
	}
	if err := audit.RecordNow(ctx, s.db, ev); err != nil {
		return err
	}
	return decision
}

// Get returns a document's metadata to those who may read it, and records the
// access.
func (s *Service) Get(ctx context.Context, p kho.Principal, id kho.DocumentID) (*kho.Document, error) {
	d, err := s.load(ctx, s.db.Pool, id, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, p, audit.DocumentMetadata, d, policies.CanRead(p, d.owner, &d.Document)); err != nil {
		return nil, err
	}
	if err := audit.RecordNow(ctx, s.db, audit.Event{Action: audit.DocumentMetadata, Outcome: audit.Success, Actor: p, Subject: d.Subject, Document: d.ID}); err != nil {
		return nil, err
	}
	return &d.Document, nil
}
