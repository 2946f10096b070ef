package consent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"kho"
	"kho/consent"
	"kho/internal/testenv"
)

// Demo agencies (internal/demo/demo.json) and their kinds.
const (
	justice  = kho.AgencyCode("000.06.16.G09") // justice
	police   = kho.AgencyCode("000.00.15.H29") // police
	planning = kho.AgencyCode("000.00.12.H10") // planning_investment
)

func agency(a kho.AgencyCode) kho.Principal {
	return kho.Principal{Kind: kho.PrincipalAgency, Agency: a, TokenID: "t-" + string(a)}
}

func citizen(id kho.SubjectID) kho.Principal {
	return kho.Principal{Kind: kho.PrincipalCitizen, Person: id, TokenID: "t-" + string(id)}
}

// matrixCase is one row of the decision matrix.
type matrixCase struct {
	name      string
	issuer    kho.AgencyCode // who deposits the document
	docType   string
	docState  string // "", revoked, superseded, expired
	consent   *consent.Terms
	state     string // consent state after granting: "", paused, revoked, expired, used, resumed
	uses      int    // uses already spent
	otherDoc  bool   // the consent names another document of the type
	fetcher   kho.Principal
	procedure string
	allowed   bool
	reason    string // when refused
	legal     bool   // admitted on a legal basis
	guardian  bool   // the consent is granted by a guardian for a minor
	business  bool   // the store is a business's, consent by its legal representative
}

func terms(grantee kho.AgencyCode, proc string, mode string, maxUses int, types ...string) *consent.Terms {
	t := &consent.Terms{Grantee: grantee, Procedure: proc, Purpose: "hồ sơ " + proc + " / application for " + proc, DocumentTypes: types,
		ValidUntil: time.Now().Add(30 * 24 * time.Hour), Mode: mode, DataLifeDays: 30}
	if maxUses > 0 {
		t.MaxUses = &maxUses
	}
	return t
}

func TestDecisionMatrix(t *testing.T) {
	d := testenv.NewDocuments(t)
	ctx := testenv.Context(t)
	officerP := kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: police, Staff: "cb07", TokenID: "t-o"}
	officerJ := kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: justice, Staff: "cb08", TokenID: "t-oj"}
	cases := []matrixCase{
		{name: "ok/active consent", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), fetcher: agency(police), procedure: "CHC", allowed: true},
		{name: "ok/one-time consent unused", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "once", 0, "GKS"), fetcher: agency(police), procedure: "CHC", allowed: true},
		{name: "fail/no consent", issuer: justice, docType: "GKS", fetcher: agency(police), procedure: "CHC", reason: "consent_required"},
		{name: "fail/consent paused", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), state: "paused", fetcher: agency(police), procedure: "CHC", reason: "consent_paused"},
		{name: "ok/consent resumed", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), state: "resumed", fetcher: agency(police), procedure: "CHC", allowed: true},
		{name: "fail/consent revoked", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), state: "revoked", fetcher: agency(police), procedure: "CHC", reason: "consent_revoked"},
		{name: "fail/consent expired", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), state: "expired", fetcher: agency(police), procedure: "CHC", reason: "consent_expired"},
		{name: "fail/one-time consent used", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "once", 0, "GKS"), uses: 1, fetcher: agency(police), procedure: "CHC", reason: "consent_used_up"},
		{name: "ok/standing consent with uses left", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 3, "GKS"), uses: 2, fetcher: agency(police), procedure: "CHC", allowed: true},
		{name: "fail/standing consent used up", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 2, "GKS"), uses: 2, fetcher: agency(police), procedure: "CHC", reason: "consent_used_up"},
		{name: "fail/consent for another purpose", issuer: justice, docType: "GKS", consent: terms(police, "DKTT", "standing", 0, "GKS"), fetcher: agency(police), procedure: "CHC", reason: "consent_other_purpose"},
		{name: "fail/consent to another agency", issuer: justice, docType: "GKS", consent: terms(justice, "CHC", "standing", 0, "GKS"), fetcher: agency(police), procedure: "CHC", reason: "consent_required"},
		{name: "fail/consent for another type", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "CCCD"), fetcher: agency(police), procedure: "CHC", reason: "consent_required"},
		{name: "ok/consent naming this document", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), fetcher: agency(police), procedure: "CHC", allowed: true},
		{name: "fail/consent naming another document", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), otherDoc: true, fetcher: agency(police), procedure: "CHC", reason: "consent_other_document"},
		{name: "fail/document revoked", issuer: justice, docType: "GKS", docState: "revoked", consent: terms(police, "CHC", "standing", 0, "GKS"), fetcher: agency(police), procedure: "CHC", reason: "document_not_valid"},
		{name: "fail/document superseded", issuer: justice, docType: "GKS", docState: "superseded", consent: terms(police, "CHC", "standing", 0, "GKS"), fetcher: agency(police), procedure: "CHC", reason: "document_not_valid"},
		{name: "fail/document expired", issuer: police, docType: "CCCD", docState: "expired", consent: terms(police, "CHC", "standing", 0, "CCCD"), fetcher: agency(police), procedure: "CHC", reason: "document_not_valid"},
		{name: "fail/agency kind does not handle the procedure", issuer: justice, docType: "GKS", consent: terms(planning, "CHC", "standing", 0, "GKS"), fetcher: agency(planning), procedure: "CHC", reason: "not_admitted"},
		{name: "fail/type not used by the procedure", issuer: police, docType: "XNCT", consent: terms(police, "DKTT", "standing", 0, "GKS"), fetcher: agency(police), procedure: "CHC", reason: "not_admitted"},
		{name: "fail/unknown procedure", issuer: justice, docType: "GKS", fetcher: agency(police), procedure: "NOPE", reason: "unknown_procedure"},
		{name: "ok/legal basis identity card, birth certificate", issuer: justice, docType: "GKS", fetcher: agency(police), procedure: "CCCCD", allowed: true, legal: true},
		{name: "ok/legal basis identity card, residence", issuer: police, docType: "XNCT", fetcher: agency(police), procedure: "CCCCD", allowed: true, legal: true},
		{name: "ok/legal basis criminal record, residence", issuer: police, docType: "XNCT", fetcher: agency(justice), procedure: "CLLTP", allowed: true, legal: true},
		{name: "fail/legal basis does not cover another type", issuer: police, docType: "CCCD", fetcher: agency(justice), procedure: "CLLTP", reason: "consent_required"},
		{name: "fail/legal basis but document revoked", issuer: police, docType: "XNCT", docState: "revoked", fetcher: agency(police), procedure: "CCCCD", reason: "document_not_valid"},
		{name: "ok/legal basis while the consent is paused", issuer: police, docType: "XNCT", consent: terms(police, "CCCCD", "standing", 0, "XNCT"), state: "paused", fetcher: agency(police), procedure: "CCCCD", allowed: true, legal: true},
		{name: "fail/criminal records stay with justice, even with consent", issuer: justice, docType: "LLTP", consent: terms(police, "CGCNANTT", "standing", 0, "LLTP"), fetcher: agency(police), procedure: "CGCNANTT", reason: "not_admitted"},
		{name: "ok/officer of the grantee agency", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), fetcher: officerP, procedure: "CHC", allowed: true},
		{name: "fail/officer of another agency", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), fetcher: officerJ, procedure: "CHC", reason: "not_admitted"},
		{name: "fail/a citizen fetching another's document", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), fetcher: citizen("079085000002"), procedure: "CHC", reason: "not_an_agency"},
		{name: "ok/consent granted by a guardian for a minor", issuer: justice, docType: "GKS", consent: terms(police, "CHC", "standing", 0, "GKS"), guardian: true, fetcher: agency(police), procedure: "CHC", allowed: true},
		{name: "ok/consent granted by a business's legal representative", issuer: planning, docType: "GCNDKDN", consent: terms(planning, "DKTDDN", "standing", 0, "GCNDKDN"), business: true, fetcher: agency(planning), procedure: "DKTDDN", allowed: true},
		{name: "fail/wrong purpose, right agency and type, after revocation elsewhere", issuer: justice, docType: "GKS", consent: terms(police, "CCCCD", "standing", 0, "GKS"), state: "revoked", fetcher: agency(police), procedure: "CHC", reason: "consent_other_purpose"},
	}
	if len(cases) < 30 {
		t.Fatalf("the matrix has %d cases", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runCase(t, ctx, d, i, tc)
		})
	}
}

func runCase(t *testing.T, ctx context.Context, d *testenv.Documents, i int, tc matrixCase) {
	subject := kho.SubjectID(fmt.Sprintf("00109%07d", 1000+i))
	if tc.guardian {
		// Born in 2020: a child under 7, for whom the guardian consents alone.
		subject = kho.SubjectID(fmt.Sprintf("00122%07d", 1000+i))
	}
	owner := citizen(subject)
	if tc.business {
		subject = kho.SubjectID(fmt.Sprintf("02%08d", 1000+i))
		rep := kho.SubjectID(fmt.Sprintf("00109%07d", 5000+i))
		owner = kho.Principal{Kind: kho.PrincipalBusinessRep, Person: rep, Business: subject, TokenID: "t-rep"}
		d.Deposit(t, agency(police), rep, "CCCD", "", nil) // the representative's own store
	}
	meta := &kho.DepositMetadata{SubjectID: subject, Type: tc.docType, Name: "tài liệu / document", MediaType: "text/plain"}
	meta.IssuedOn, _ = kho.ParseDate("2024-01-15")
	if tc.docState == "expired" {
		meta.IssuedOn, _ = kho.ParseDate("2019-12-20")
		from, _ := kho.ParseDate("2020-01-01")
		until, _ := kho.ParseDate("2021-01-01")
		meta.ValidFrom, meta.ValidUntil = &from, &until
	}
	doc := d.Deposit(t, agency(tc.issuer), subject, tc.docType, "", meta)
	switch tc.docState {
	case "revoked":
		if _, err := d.Svc.Revoke(ctx, agency(tc.issuer), doc.ID, "cấp sai / issued in error"); err != nil {
			t.Fatal(err)
		}
	case "superseded":
		if _, err := d.Svc.Supersede(ctx, agency(tc.issuer), doc.ID, &kho.DepositMetadata{Type: tc.docType, Name: "v2", IssuedOn: meta.IssuedOn, MediaType: "text/plain"}, strings.NewReader("v2")); err != nil {
			t.Fatal(err)
		}
	}
	if tc.business {
		if _, err := d.DB.Pool.Exec(ctx, `INSERT INTO business_representatives (business_handle, person_handle, role)
			SELECT b.handle, p.handle, 'legal_representative' FROM subjects b, subjects p WHERE b.id = $1 AND p.id = $2`, subject, owner.Person); err != nil {
			t.Fatal(err)
		}
	}
	if tc.consent != nil {
		grantor, onBehalf := owner, kho.SubjectID("")
		if tc.guardian {
			guardian := kho.SubjectID(fmt.Sprintf("00109%07d", 8000+i))
			d.Deposit(t, agency(justice), guardian, "GKS", "", nil)
			if _, err := d.DB.Pool.Exec(ctx, `INSERT INTO guardianships (guardian_handle, ward_handle, basis)
				SELECT g.handle, w.handle, 'parent' FROM subjects g, subjects w WHERE g.id = $1 AND w.id = $2`, guardian, subject); err != nil {
				t.Fatal(err)
			}
			grantor, onBehalf = citizen(guardian), subject
		}
		terms := *tc.consent
		if tc.otherDoc {
			other := d.Deposit(t, agency(tc.issuer), subject, tc.docType, "", nil)
			terms.DocumentIDs = []kho.DocumentID{other.ID}
		} else if strings.Contains(tc.name, "naming this document") {
			terms.DocumentIDs = []kho.DocumentID{doc.ID}
		}
		c, err := d.Consents.Grant(ctx, grantor, terms, onBehalf)
		if err != nil {
			t.Fatalf("grant: %v", err)
		}
		if tc.guardian && c.GrantedBy != "guardian" || tc.business && c.GrantedBy != "legal_representative" {
			t.Fatalf("the artefact records %q as granting", c.GrantedBy)
		}
		switch tc.state {
		case "paused", "revoked":
			if _, _, err := d.Consents.SetStatus(ctx, grantor, c.ID, tc.state, "", false); err != nil {
				t.Fatal(err)
			}
		case "resumed":
			if _, _, err := d.Consents.SetStatus(ctx, grantor, c.ID, consent.Paused, "", false); err != nil {
				t.Fatal(err)
			}
			if _, _, err := d.Consents.SetStatus(ctx, grantor, c.ID, consent.Active, "", false); err != nil {
				t.Fatal(err)
			}
		case "expired":
			if _, err := d.DB.Pool.Exec(ctx, `UPDATE consents SET valid_from = now() - interval '2 days', valid_until = now() - interval '1 day' WHERE id = $1`, c.ID); err != nil {
				t.Fatal(err)
			}
		}
		if tc.uses > 0 {
			if _, err := d.DB.Pool.Exec(ctx, `UPDATE consents SET uses = $2 WHERE id = $1`, c.ID, tc.uses); err != nil {
				t.Fatal(err)
			}
		}
	}
	req := kho.FetchRequest{Principal: tc.fetcher, Document: doc, Procedure: tc.procedure}
	// The explanation, computed first without side effects, must agree.
	dec, decErr := d.Consents.Decide(ctx, req)
	grant, err := d.Consents.AuthorizeFetch(ctx, req)
	if tc.reason == "unknown_procedure" {
		if kho.ErrorReason(err) != tc.reason || kho.ErrorReason(decErr) != tc.reason {
			t.Fatalf("got %v / %v, want %s", err, decErr, tc.reason)
		}
		return
	}
	if decErr != nil {
		t.Fatal(decErr)
	}
	explain := dec.Explain()
	if tc.allowed {
		if err != nil {
			t.Fatalf("refused: %v\n%s", err, explain)
		}
		if tc.legal != (grant.LegalBasis != "") || tc.legal == (grant.ConsentID != "") {
			t.Fatalf("grant %+v, want legal basis=%t", grant, tc.legal)
		}
		if !strings.HasPrefix(explain, "ALLOW") {
			t.Fatalf("explain disagrees:\n%s", explain)
		}
		return
	}
	if err == nil {
		t.Fatalf("admitted (%+v), want refusal %s\n%s", grant, tc.reason, explain)
	}
	if !strings.HasPrefix(explain, "DENY ("+tc.reason+")") {
		t.Fatalf("explain disagrees with %s:\n%s", tc.reason, explain)
	}
	wantCode, wantReason := kho.EFORBIDDEN, tc.reason
	if tc.reason == "not_admitted" || tc.reason == "not_an_agency" {
		// Nothing about the document leaks: the answer is a missing
		// document's, while the explanation (and the audit trail) keep
		// the real reason.
		wantCode, wantReason = kho.ENOTFOUND, "not_found"
	}
	if kho.ErrorReason(err) != wantReason {
		t.Fatalf("reason %q (%v), want %q\n%s", kho.ErrorReason(err), err, wantReason, explain)
	}
	if kho.ErrorCode(err) != wantCode {
		t.Fatalf("code %s, want %s", kho.ErrorCode(err), wantCode)
	}
}
