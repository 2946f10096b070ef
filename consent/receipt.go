package consent

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kho"
)

// ReceiptVersion names the receipt's format.
const ReceiptVersion = "kho-consent-receipt/2"

// Receipt is what the subject gets on every change of a consent: the
// artefact as it stands, and what ISO/IEC TS 27560 (consent records and
// receipts) and India's Account Aggregator consent artefact ask a receipt to
// say, as far as they apply. It is signed as a compact JWS whose claims
// these are; docs/consent-receipt.md maps each field to the standards.
type Receipt struct {
	// JWT registered claims.
	Issuer   string            `json:"iss"`
	IssuedAt int64             `json:"iat"`
	ID       string            `json:"jti"` // this receipt's own id
	Subject  kho.SubjectHandle `json:"sub"` // the store, never the person's number

	*Consent // id, grantee, procedure, purpose, types, validity, uses, status, history, ...

	Version       string       `json:"receipt_version"`
	Controller    Controller   `json:"controller"`
	LegalBasis    string       `json:"legal_basis"`
	Jurisdiction  string       `json:"jurisdiction"`
	Language      string       `json:"language"`
	Method        string       `json:"method"`
	Categories    []Category   `json:"pii_categories"`
	Recipients    []Recipient  `json:"recipients"`
	Withdrawal    WithdrawalBy `json:"withdrawal"`
	PolicyVersion string       `json:"policy_version"`

	// Account Aggregator consent artefact fields that fit.
	ConsentMode string   `json:"consent_mode"` // STORE: the agency keeps a copy for the data life
	FetchType   string   `json:"fetch_type"`   // ONETIME or PERIODIC
	Frequency   *Count   `json:"frequency,omitempty"`
	DataLife    Duration `json:"data_life"`
}

// Category is a kind of personal data a consent covers: a document type.
type Category struct {
	Code   string `json:"code"`
	NameVI string `json:"name_vi"`
	NameEN string `json:"name_en"`
}

// Recipient is who receives the data: the grantee agency.
type Recipient struct {
	Agency kho.AgencyCode `json:"agency"`
	NameVI string         `json:"name_vi"`
	NameEN string         `json:"name_en"`
}

// WithdrawalBy says how the subject withdraws the consent.
type WithdrawalBy struct {
	How string `json:"how"`
	API string `json:"api"`
}

// Count is a number of uses over the consent's validity.
type Count struct {
	Unit  string `json:"unit"`
	Value int    `json:"value"`
}

// Duration is an amount of time in a unit.
type Duration struct {
	Unit  string `json:"unit"`
	Value int    `json:"value"`
}

// receipt builds the receipt of c as it stands at at, reading the names of
// its document types and grantee and the catalogue's version in tx.
func (s *Service) receipt(ctx context.Context, tx pgx.Tx, c *Consent, at time.Time) (*Receipt, error) {
	r := &Receipt{
		Issuer: s.issuer, IssuedAt: at.Unix(), ID: uuid.NewString(), Subject: c.Subject, Consent: c,
		Version: ReceiptVersion, Controller: s.controller,
		LegalBasis:   "consent of the data subject (Nghị định 13/2023/NĐ-CP, Điều 11 / Decree 13/2023/ND-CP, Article 11)",
		Jurisdiction: "VN", Language: "vi", Method: "explicit, " + c.Channel,
		Withdrawal: WithdrawalBy{How: "at any time, by the subject or their guardian or representative, in the portal or through the API; it takes effect on the agency's next request",
			API: "POST /v1/consents/" + c.ID + "/revocation"},
		ConsentMode: "STORE", FetchType: "PERIODIC", DataLife: Duration{Unit: "DAY", Value: c.DataLifeDays},
	}
	if c.Mode == "once" {
		r.FetchType = "ONETIME"
	}
	if c.MaxUses != nil {
		r.Frequency = &Count{Unit: "VALIDITY", Value: *c.MaxUses}
	}
	rows, err := tx.Query(ctx, `SELECT code, name_vi, name_en FROM document_types WHERE code = ANY($1) ORDER BY code`, c.DocumentTypes)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read document types", err)
	}
	r.Categories, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Category, error) {
		var cat Category
		return cat, row.Scan(&cat.Code, &cat.NameVI, &cat.NameEN)
	})
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read document types", err)
	}
	rec := Recipient{Agency: c.Grantee}
	if err := tx.QueryRow(ctx, `SELECT name_vi, name_en FROM agencies WHERE code = $1`, string(c.Grantee)).Scan(&rec.NameVI, &rec.NameEN); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read the grantee", err)
	}
	r.Recipients = []Recipient{rec}
	if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT version FROM catalogue_versions ORDER BY loaded_at DESC LIMIT 1), '')`).Scan(&r.PolicyVersion); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "consent: read the catalogue version", err)
	}
	return r, nil
}
