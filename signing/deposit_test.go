package signing_test

import (
	"bytes"
	"io"
	"testing"

	"kho"
	"kho/internal/testenv"
	"kho/signing"
)

// A PDF an agency deposits is stored signed by that agency, and pdfsig
// accepts the downloaded file; a citizen's own PDF is stored as uploaded.
func TestDepositedAgencyPDFIsSigned(t *testing.T) {
	d := testenv.NewDocuments(t)
	ctx := testenv.Context(t)
	f := newFixture(t)
	pdf := samplePDF("ket qua / result")
	meta := &kho.DepositMetadata{Name: "Phiếu lý lịch tư pháp", MediaType: "application/pdf", DossierCode: "000.06.16.G09-231215-0007", ResultNo: 1}
	meta.IssuedOn, _ = kho.ParseDate("2024-01-15")
	doc := d.Deposit(t, kho.Principal{Kind: kho.PrincipalAgency, Agency: agencyJ, TokenID: "t"}, "001090000001", "LLTP", string(pdf), meta)
	c, err := d.Svc.Open(ctx, kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001", TokenID: "t"}, doc.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(c.Body)
	c.Body.Close()
	r := pdfsig(t, f.nssdir, stored)
	if len(r.Signatures) != 1 || r.Signatures[0] != "Signature is Valid." || r.Certs[0] != "Certificate is Trusted." {
		t.Fatalf("pdfsig on the stored PDF:\n%s", r.Raw)
	}
	rep, err := signing.Verify(stored, f.root)
	if err != nil || !rep.Valid || rep.Signatures[0].Signer != "Ba Dinh District Justice Office (sample) (000.06.16.G09)" {
		t.Fatalf("report: %+v %v", rep, err)
	}
	own := &kho.DepositMetadata{Name: "bản tự khai", MediaType: "application/pdf"}
	own.IssuedOn, _ = kho.ParseDate("2024-01-15")
	self := d.Deposit(t, kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001", TokenID: "t"}, "001090000001", "XNCT", string(pdf), own)
	c, err = d.Svc.Open(ctx, kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001", TokenID: "t"}, self.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c.Body)
	c.Body.Close()
	if !bytes.Equal(got, pdf) {
		t.Fatal("a self-declared PDF was changed")
	}
}

// When an agency officer deposits a scan, the agency signs and the officer
// adds a personal signature; pdfsig accepts both.
func TestOfficerDepositCarriesTheOfficersSignature(t *testing.T) {
	d := testenv.NewDocuments(t)
	ctx := testenv.Context(t)
	f := newFixture(t)
	meta := &kho.DepositMetadata{Name: "Bản quét hồ sơ / scanned dossier", MediaType: "application/pdf"}
	meta.IssuedOn, _ = kho.ParseDate("2024-01-15")
	officer := kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: agencyJ, Staff: "cb01", TokenID: "t"}
	doc := d.Deposit(t, officer, "001090000001", "GKS", string(samplePDF("scan")), meta)
	c, err := d.Svc.Open(ctx, kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001", TokenID: "t"}, doc.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(c.Body)
	c.Body.Close()
	r := pdfsig(t, f.nssdir, stored)
	if len(r.Signatures) != 2 || r.Signatures[0] != "Signature is Valid." || r.Signatures[1] != "Signature is Valid." ||
		r.Certs[0] != "Certificate is Trusted." || r.Certs[1] != "Certificate is Trusted." {
		t.Fatalf("pdfsig:\n%s", r.Raw)
	}
	rep, err := signing.Verify(stored, f.root)
	if err != nil || !rep.Valid || len(rep.Signatures) != 2 ||
		rep.Signatures[1].Signer != "Officer cb01, Ba Dinh District Justice Office (… (000.06.16.G09)" {
		t.Fatalf("report: %+v %v", rep, err)
	}
}
