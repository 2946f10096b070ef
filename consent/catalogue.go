package consent

import (
	"context"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/policies"
	"kho/postgres"
)

// LoadCatalogue writes a catalogue into PostgreSQL in one transaction:
// document types and procedures are inserted or updated, each procedure's
// document types replaced, and the version recorded. Loading the same
// version again changes nothing.
func LoadCatalogue(ctx context.Context, db *postgres.DB, c *policies.Catalogue) error {
	return db.InTx(ctx, func(tx pgx.Tx) error {
		for _, t := range c.DocumentTypes {
			var months any
			if t.ValidityMonths > 0 {
				months = t.ValidityMonths
			}
			if _, err := tx.Exec(ctx, `INSERT INTO document_types (code, name_vi, name_en, sample, issuer_kinds, validity_months, subject_kinds) VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (code) DO UPDATE SET name_vi = $2, name_en = $3, sample = $4, issuer_kinds = $5, validity_months = $6, subject_kinds = $7`,
				t.Code, t.NameVI, t.NameEN, t.Sample, t.IssuerKinds, months, t.StoreKinds()); err != nil {
				return kho.WrapError(kho.EUNAVAILABLE, "catalogue: document type "+t.Code, err)
			}
		}
		for _, p := range c.Procedures {
			if _, err := tx.Exec(ctx, `INSERT INTO procedures (code, name_vi, name_en, sample, handler_kinds) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (code) DO UPDATE SET name_vi = $2, name_en = $3, sample = $4, handler_kinds = $5`,
				p.Code, p.NameVI, p.NameEN, p.Sample, p.HandlerKinds); err != nil {
				return kho.WrapError(kho.EUNAVAILABLE, "catalogue: procedure "+p.Code, err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM procedure_document_types WHERE procedure_code = $1`, p.Code); err != nil {
				return kho.WrapError(kho.EUNAVAILABLE, "catalogue: procedure "+p.Code, err)
			}
			for _, group := range []struct {
				codes    []string
				required bool
			}{{p.Requires, true}, {p.Optional, false}} {
				for _, code := range group.codes {
					if _, err := tx.Exec(ctx, `INSERT INTO procedure_document_types (procedure_code, document_type_code, required) VALUES ($1, $2, $3)`,
						p.Code, code, group.required); err != nil {
						return kho.WrapError(kho.EUNAVAILABLE, "catalogue: procedure "+p.Code, err)
					}
				}
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO catalogue_versions (version, sha256) VALUES ($1, $2) ON CONFLICT (version) DO UPDATE SET sha256 = $2, loaded_at = now()`, c.Version, c.SHA256)
		if err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "catalogue: record version", err)
		}
		return nil
	})
}
