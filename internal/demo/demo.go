// Package demo loads the dev stack's demo data: a few citizens (one a minor
// with a guardian), a business with its representatives, two agencies, and
// the sample catalogue. It is
// idempotent, so make run can seed on every start.
package demo

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
	"kho/consent"
	"kho/policies"
	"kho/postgres"
)

//go:embed demo.json
var demoJSON []byte

// Data is the shape of demo.json.
type Data struct {
	Citizens []struct {
		ID kho.SubjectID `json:"id"`
	} `json:"citizens"`
	Businesses []struct {
		ID                  kho.SubjectID   `json:"id"`
		LegalRepresentative kho.SubjectID   `json:"legal_representative"`
		Authorised          []kho.SubjectID `json:"authorised"`
	} `json:"businesses"`
	Agencies []struct {
		Code   kho.AgencyCode `json:"code"`
		Kind   string         `json:"kind"`
		NameVI string         `json:"name_vi"`
		NameEN string         `json:"name_en"`
	} `json:"agencies"`
	Guardianships []struct {
		Guardian kho.SubjectID `json:"guardian"`
		Ward     kho.SubjectID `json:"ward"`
		Basis    string        `json:"basis"`
	} `json:"guardianships"`
	Catalogue *policies.Catalogue `json:"-"`
}

// Load parses and validates the embedded demo data.
func Load() (*Data, error) {
	var d Data
	if err := json.Unmarshal(demoJSON, &d); err != nil {
		return nil, fmt.Errorf("demo: parse: %w", err)
	}
	for _, c := range d.Citizens {
		if err := c.ID.Validate(); err != nil || c.ID.Kind() != kho.SubjectCitizen {
			return nil, fmt.Errorf("demo: a citizen has an invalid personal identification number")
		}
	}
	for _, b := range d.Businesses {
		if err := b.ID.Validate(); err != nil || b.ID.Kind() != kho.SubjectBusiness {
			return nil, fmt.Errorf("demo: a business has an invalid enterprise code")
		}
	}
	for _, a := range d.Agencies {
		if err := a.Code.Validate(); err != nil {
			return nil, fmt.Errorf("demo: agency %s: %w", a.Code, err)
		}
	}
	cat, err := policies.DefaultCatalogue()
	if err != nil {
		return nil, err
	}
	d.Catalogue = cat
	return &d, nil
}

// Seed writes the demo data in one transaction, leaving existing rows as
// they are.
func Seed(ctx context.Context, db *postgres.DB) (*Data, error) {
	d, err := Load()
	if err != nil {
		return nil, err
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		subject := func(id kho.SubjectID) error {
			_, err := tx.Exec(ctx, `INSERT INTO subjects (id, kind, handle) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
				id, id.Kind(), uuid.New())
			return err
		}
		for _, c := range d.Citizens {
			if err := subject(c.ID); err != nil {
				return err
			}
		}
		for _, b := range d.Businesses {
			if err := subject(b.ID); err != nil {
				return err
			}
			reps := map[kho.SubjectID]string{b.LegalRepresentative: "legal_representative"}
			for _, a := range b.Authorised {
				reps[a] = "authorised"
			}
			for person, role := range reps {
				if _, err := tx.Exec(ctx, `INSERT INTO business_representatives (business_handle, person_handle, role)
					SELECT b.handle, p.handle, $3 FROM subjects b, subjects p WHERE b.id = $1 AND p.id = $2
					ON CONFLICT DO NOTHING`, b.ID, person, role); err != nil {
					return err
				}
			}
		}
		for _, a := range d.Agencies {
			if _, err := tx.Exec(ctx, `INSERT INTO agencies (code, kind, name_vi, name_en) VALUES ($1, $2, $3, $4) ON CONFLICT (code) DO NOTHING`,
				a.Code, a.Kind, a.NameVI, a.NameEN); err != nil {
				return err
			}
		}
		for _, g := range d.Guardianships {
			if _, err := tx.Exec(ctx, `INSERT INTO guardianships (guardian_handle, ward_handle, basis)
				SELECT gs.handle, w.handle, $3 FROM subjects gs, subjects w WHERE gs.id = $1 AND w.id = $2 ON CONFLICT DO NOTHING`,
				g.Guardian, g.Ward, g.Basis); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "demo: seed", err)
	}
	if err := consent.LoadCatalogue(ctx, db, d.Catalogue); err != nil {
		return nil, err
	}
	return d, nil
}
