package signing_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kho"
	"kho/internal/demo"
	"kho/internal/testenv"
	"kho/postgres"
	"kho/signing"
	"kho/vault"
)

const agencyJ = kho.AgencyCode("000.06.16.G09")

type fixture struct {
	db     *postgres.DB
	signer *signing.Signer
	keys   *vault.Transit
	root   *x509.Certificate
	nssdir string
	ctx    context.Context
}

func newFixture(t testing.TB, mod ...func(*signing.Config)) *fixture {
	t.Helper()
	ctx := testenv.Context(t)
	db := testenv.DB(t, true)
	if _, err := demo.Seed(ctx, db); err != nil {
		t.Fatal(err)
	}
	keys, err := vault.NewTransit(testenv.KhodVault(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := signing.Config{DB: db, Keys: keys}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := signing.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root, err := keys.RootCertificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, signer: s, keys: keys, root: root, nssdir: nssDB(t, root), ctx: ctx}
}

// nssDB makes an NSS database trusting the deployment root, for pdfsig. The
// root is trusted for S/MIME ("C,C,"): Poppler validates PDF signers for that
// use, and with SSL trust alone ("C,,") it reports the issuer untrusted.
func nssDB(t testing.TB, root *x509.Certificate) string {
	t.Helper()
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", "sql:" + dir, "--empty-password"},
		{"-A", "-d", "sql:" + dir, "-n", "kho-root", "-t", "C,C,", "-a", "-i", rootFile},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// pdfsigResult is what Poppler's pdfsig says of each signature.
type pdfsigResult struct {
	Signatures []string // "Signature Validation" per signature
	Certs      []string // "Certificate Validation" per signature
	Raw        string
}

func pdfsig(t testing.TB, nssdir string, pdf []byte) pdfsigResult {
	t.Helper()
	f := filepath.Join(t.TempDir(), "doc.pdf")
	if err := os.WriteFile(f, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("pdfsig", "-nssdir", "sql:"+nssdir, f).CombinedOutput()
	var r pdfsigResult
	r.Raw = string(out)
	for _, line := range strings.Split(r.Raw, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "- Signature Validation: "); ok {
			r.Signatures = append(r.Signatures, v)
		}
		if v, ok := strings.CutPrefix(line, "- Certificate Validation: "); ok {
			r.Certs = append(r.Certs, v)
		}
	}
	return r
}
