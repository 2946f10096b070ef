// Package demo loads the dev stack's demo data: a few citizens, a business
// with its representatives, two agencies and a small sample catalogue. It is
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
	DocumentTypes []struct {
		Code   string `json:"code"`
		NameVI string `json:"name_vi"`
		NameEN string `json:"name_en"`
		Sample bool   `json:"sample"`
	} `json:"document_types"`
	Procedures []struct {
		Code     string   `json:"code"`
		NameVI   string   `json:"name_vi"`
		NameEN   string   `json:"name_en"`
		Sample   bool     `json:"sample"`
		Requires []string `json:"requires"`
		Optional []string `json:"optional"`
	} `json:"procedures"`
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
		for _, t := range d.DocumentTypes {
			if _, err := tx.Exec(ctx, `INSERT INTO document_types (code, name_vi, name_en, sample) VALUES ($1, $2, $3, $4) ON CONFLICT (code) DO NOTHING`,
				t.Code, t.NameVI, t.NameEN, t.Sample); err != nil {
				return err
			}
		}
		for _, p := range d.Procedures {
			if _, err := tx.Exec(ctx, `INSERT INTO procedures (code, name_vi, name_en, sample) VALUES ($1, $2, $3, $4) ON CONFLICT (code) DO NOTHING`,
				p.Code, p.NameVI, p.NameEN, p.Sample); err != nil {
				return err
			}
			for _, group := range []struct {
				codes    []string
				required bool
			}{{p.Requires, true}, {p.Optional, false}} {
				for _, c := range group.codes {
					if _, err := tx.Exec(ctx, `INSERT INTO procedure_document_types (procedure_code, document_type_code, required) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
						p.Code, c, group.required); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "demo: seed", err)
	}
	return d, nil
}
