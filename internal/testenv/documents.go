package testenv

import (
	"context"
	"testing"
	"time"

	"kho"
	"kho/audit"
	"kho/consent"
	"kho/internal/demo"
	"kho/policies"
	"kho/postgres"
	"kho/signing"
	"kho/storage"
	"kho/vault"
)

// Documents is a document service on the real stack with a schema (seeded
// with the demo data), an object prefix and subject keys of the test's own,
// all removed at cleanup.
type Documents struct {
	Svc    *storage.Service
	DB     *postgres.DB
	Blobs  *storage.MinIO
	Keys   *vault.Transit
	Prefix string
	Log    *audit.Log // the same schema's audit trail, with a checkpoint key of the test's own
	// Consents decides reuse; the service asks it for fetches.
	Consents *consent.Service
	// Operator is the same service with the operator's Vault token, as
	// `kho keys rewrap` runs: khod's own token may not retire key versions.
	Operator *storage.Service
}

// NewDocuments builds it; mod may change the service's config.
func NewDocuments(t testing.TB, mod ...func(*storage.Config)) *Documents {
	t.Helper()
	return newDocuments(t, DB(t, true), true, mod...)
}

// NewDocumentsOn builds it on db, migrated, which outlives the test: the
// subjects' keys are left alone at cleanup.
func NewDocumentsOn(t testing.TB, db *postgres.DB, mod ...func(*storage.Config)) *Documents {
	t.Helper()
	return newDocuments(t, db, false, mod...)
}

func newDocuments(t testing.TB, db *postgres.DB, ownDB bool, mod ...func(*storage.Config)) *Documents {
	t.Helper()
	ctx := Context(t)
	if _, err := demo.Seed(ctx, db); err != nil {
		t.Fatal(err)
	}
	keys, err := vault.NewTransit(KhodVault(t))
	if err != nil {
		t.Fatal(err)
	}
	blobs := KhodBlobs(t)
	prefix := Name("t/") + "/"
	engine, err := policies.DefaultEngine()
	if err != nil {
		t.Fatal(err)
	}
	consents, err := consent.New(db, engine, keys)
	if err != nil {
		t.Fatal(err)
	}
	pdfSigner, err := signing.New(signing.Config{DB: db, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	cfg := storage.Config{DB: db, Blobs: blobs, Keys: keys, Signer: keys, ObjectPrefix: prefix, Reuse: consents, PDFSigner: pdfSigner, Consents: consents}
	for _, m := range mod {
		m(&cfg)
	}
	svc, err := storage.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := VaultRoot(t)
	operatorKeys, err := vault.NewTransitWith(root)
	if err != nil {
		t.Fatal(err)
	}
	opCfg := cfg
	opCfg.Keys = operatorKeys
	operator, err := storage.New(opCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		_ = blobs.Walk(bg, prefix, func(name string, _ time.Time) error { return blobs.Delete(bg, name) })
		if !ownDB {
			return
		}
		rows, err := db.Pool.Query(bg, `SELECT handle::text FROM subjects`)
		if err != nil {
			return
		}
		defer rows.Close()
		operator, _ := vault.NewTransitWith(root)
		for rows.Next() {
			var h string
			if rows.Scan(&h) == nil {
				_ = operator.Delete(bg, kho.SubjectHandle(h))
			}
		}
	})
	signer, vkey, err := keys.NoteSigner(ctx, Name("t-audit-"), "kho.test/audit")
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.NewLog(db, signer, vkey, "kho.test/audit")
	if err != nil {
		t.Fatal(err)
	}
	return &Documents{Svc: svc, DB: db, Blobs: blobs, Keys: keys, Prefix: prefix, Log: log, Consents: consents, Operator: operator}
}
