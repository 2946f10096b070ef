package signing_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	pdfapi "github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"

	"kho/signing"
	"kho/vault"
)

// producers are PDFs made by different tools: kho's own minimal writer (a
// cross-reference table), qpdf (object streams and a cross-reference
// stream), and pdfcpu (its own writer).
func producers(t *testing.T) map[string][]byte {
	t.Helper()
	base := samplePDF("Giay khai sinh / Birth certificate")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.pdf")
	if err := os.WriteFile(in, base, 0o644); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "qpdf.pdf")
	if out, err := exec.Command("qpdf", "--object-streams=generate", "--newline-before-endstream", in, q).CombinedOutput(); err != nil {
		t.Fatalf("qpdf: %v\n%s", err, out)
	}
	qb, _ := os.ReadFile(q)
	if !bytes.Contains(qb, []byte("/Type /XRef")) {
		t.Fatal("qpdf did not write a cross-reference stream")
	}
	var pc bytes.Buffer
	model.ConfigPath = "disable" // pdfcpu would write a configuration into $HOME
	conf := model.NewDefaultConfiguration()
	if err := pdfapi.Optimize(bytes.NewReader(base), &pc, conf); err != nil {
		t.Fatalf("pdfcpu: %v", err)
	}
	return map[string][]byte{"kho writer": base, "qpdf": qb, "pdfcpu": pc.Bytes()}
}

func TestSignaturesFromSeveralProducersValidate(t *testing.T) {
	f := newFixture(t, func(c *signing.Config) { c.Visible = true })
	for name, pdf := range producers(t) {
		t.Run(name, func(t *testing.T) {
			signed, err := f.signer.Sign(f.ctx, pdf, signing.Options{Agency: agencyJ, ResultCode: "000.06.16.G09-231215-0001-KQ1"})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(signed, pdf) {
				t.Fatal("the original bytes were changed")
			}
			r := pdfsig(t, f.nssdir, signed)
			if len(r.Signatures) != 1 || r.Signatures[0] != "Signature is Valid." || r.Certs[0] != "Certificate is Trusted." || !strings.Contains(r.Raw, "Total document signed") {
				t.Fatalf("pdfsig:\n%s", r.Raw)
			}
			if out, err := exec.Command("qpdf", "--check", writeTemp(t, signed)).CombinedOutput(); err != nil {
				t.Fatalf("qpdf --check: %v\n%s", err, out)
			}
			// One byte changed inside the signed range: pdfsig reports it.
			for _, at := range []int{len(pdf) / 2, len(signed) - 20} {
				bad := bytes.Clone(signed)
				bad[at] ^= 0x01
				r := pdfsig(t, f.nssdir, bad)
				if len(r.Signatures) == 1 && r.Signatures[0] == "Signature is Valid." {
					t.Fatalf("byte %d changed, pdfsig still says valid:\n%s", at, r.Raw)
				}
			}
			// pdfcpu agrees with pdfsig on both files.
			rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.root.Raw})
			if ok := pdfcpuValid(t, rootPEM, signed); !ok {
				t.Fatal("pdfcpu says the signed file is not valid")
			}
			bad := bytes.Clone(signed)
			bad[len(pdf)/2] ^= 0x01
			if pdfcpuValid(t, rootPEM, bad) {
				t.Fatal("pdfcpu says the tampered file is valid")
			}
		})
	}
}

// An earlier signature stays valid when kho adds its own.
func TestSigningAnAlreadySignedPDF(t *testing.T) {
	f := newFixture(t)
	once, err := f.signer.Sign(f.ctx, samplePDF("signed twice"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	twice, err := f.signer.Sign(f.ctx, once, signing.Options{Agency: "000.00.15.H29"})
	if err != nil {
		t.Fatal(err)
	}
	r := pdfsig(t, f.nssdir, twice)
	if len(r.Signatures) != 2 || r.Signatures[0] != "Signature is Valid." || r.Signatures[1] != "Signature is Valid." {
		t.Fatalf("pdfsig on a twice-signed file:\n%s", r.Raw)
	}
	if !strings.Contains(r.Raw, "Ha Noi City Police") || !strings.Contains(r.Raw, "Ba Dinh District Justice Office") {
		t.Fatalf("signers:\n%s", r.Raw)
	}
	rep, err := signing.Verify(twice, f.root)
	if err != nil || len(rep.Signatures) != 2 || !rep.Signatures[0].Valid || !rep.Signatures[1].Valid ||
		!rep.Signatures[0].LaterRevisions || rep.Signatures[1].LaterRevisions || !rep.Signatures[1].ChainTrusted {
		t.Fatalf("kho's report: %+v %v", rep, err)
	}
}

var pdfcpuTrust sync.Once

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "f.pdf")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// pdfcpuValid asks pdfcpu whether every signature's integrity holds. pdfcpu
// reads trusted certificates from a package-level folder; the test points it
// at one holding the deployment root (pdfcpu offers no other way).
func pdfcpuValid(t *testing.T, root []byte, pdf []byte) bool {
	t.Helper()
	pdfcpuTrust.Do(func() {
		dir, err := os.MkdirTemp("", "pdfcpu-trust-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "kho-root.pem"), root, 0o644); err != nil {
			t.Fatal(err)
		}
		model.ConfigPath = "disable"
		model.TrustedCertDir = dir
	})
	res, err := pdfapi.ValidateSignaturesRaw(bytes.NewReader(pdf), true, model.NewDefaultConfiguration())
	if err != nil || len(res) == 0 {
		t.Logf("pdfcpu: %v (%d results)", err, len(res))
		return false
	}
	for _, r := range res {
		if r.Status == model.SignatureStatusInvalid || r.Reason == model.SignatureReasonDocModified || r.Reason == model.SignatureReasonSignatureForged {
			return false
		}
	}
	return true
}

// tsa runs an RFC 3161 timestamp authority for the test.
func tsa(t *testing.T) (string, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "kho test TSA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: []pkix.Extension{timestampingEKU()},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := timestamp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ts := timestamp.Timestamp{HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage, Time: time.Now(),
			Nonce: req.Nonce, Policy: asn1.ObjectIdentifier{1, 2, 3, 4, 1}, AddTSACertificate: req.Certificates, SerialNumber: big.NewInt(time.Now().UnixNano())}
		resp, err := ts.CreateResponseWithOpts(cert, key, crypto.SHA256)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, cert
}

func TestBTSignatureWithATimestampAuthority(t *testing.T) {
	url, tsaCert := tsa(t)
	f := newFixture(t, func(c *signing.Config) { c.TSA = url })
	signed, err := f.signer.Sign(f.ctx, samplePDF("timestamped"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	r := pdfsig(t, f.nssdir, signed)
	if len(r.Signatures) != 1 || r.Signatures[0] != "Signature is Valid." {
		t.Fatalf("pdfsig:\n%s", r.Raw)
	}
	trusted := x509.NewCertPool()
	trusted.AddCert(tsaCert)
	rep, err := signing.VerifyWith(signed, signing.VerifyOptions{Root: f.root, TSARoots: trusted})
	if err != nil || len(rep.Signatures) != 1 {
		t.Fatalf("report: %+v %v", rep, err)
	}
	s := rep.Signatures[0]
	if !s.Valid || s.Timestamp == nil || !s.Timestamp.Valid || s.Timestamp.Authority != tsaCert.Subject.CommonName || s.Level != "B-T" {
		t.Fatalf("timestamp in the report: %+v %+v", s, s.Timestamp)
	}
	// Without the authority among the trusted ones, the token proves no
	// time, and the level is what remains: B-B.
	if rep, _ := signing.Verify(signed, f.root); rep.Signatures[0].Level != "B-B" || !rep.Valid {
		t.Fatalf("untrusted timestamp: %+v", rep.Signatures[0])
	}
	// An unreachable authority fails the signature rather than silently
	// downgrading it to B-B.
	g := newFixture(t, func(c *signing.Config) { c.TSA = "http://127.0.0.1:1/tsa" })
	if _, err := g.signer.Sign(g.ctx, samplePDF("x"), signing.Options{Agency: agencyJ}); err == nil {
		t.Fatal("signed without the configured timestamp authority")
	}
}

func TestAgencySigningKeyCannotBeExported(t *testing.T) {
	f := newFixture(t)
	if _, err := f.signer.Sign(f.ctx, samplePDF("x"), signing.Options{Agency: agencyJ}); err != nil {
		t.Fatal(err)
	}
	khod := f.keys
	_ = khod
	for _, path := range []string{"export/signing-key/", "export/public-key/", "backup/"} {
		_, err := testKhodLogical(t).Read(vault.MountSigning + "/" + path + signing.KeyName(agencyJ))
		if err == nil {
			t.Fatalf("%s of the agency's signing key succeeded", path)
		}
	}
	// Not even the root token can export it: the key is not exportable.
	if s, err := testRootLogical(t).Read(vault.MountSigning + "/export/signing-key/" + signing.KeyName(agencyJ)); err == nil && s != nil {
		t.Fatal("the agency's key was exported with the root token")
	}
}

// A certificate is renewed before it expires: a new one, for the same key,
// is issued once less than the renewal margin is left.
func TestCertificateRenewal(t *testing.T) {
	f := newFixture(t, func(c *signing.Config) { c.CertTTL, c.RenewBefore = 48*time.Hour, time.Hour })
	first, _, err := f.signer.Certificate(f.ctx, agencyJ)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := f.signer.Certificate(f.ctx, agencyJ)
	if err != nil || !again.Leaf.Equal(first.Leaf) {
		t.Fatalf("a fresh certificate was replaced: %v", err)
	}
	if left := time.Until(first.Leaf.NotAfter); left > 49*time.Hour || left < 47*time.Hour {
		t.Fatalf("certificate lives %s, want about 48h", left)
	}
	// The same database, with a margin larger than what is left: renewal.
	renewing, err := signing.New(signing.Config{DB: f.db, Keys: f.keys, CertTTL: 96 * time.Hour, RenewBefore: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	renewed, _, err := renewing.Certificate(f.ctx, agencyJ)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.Equal(first.Leaf) || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatal("the certificate was not renewed")
	}
	if !bytes.Equal(renewed.Leaf.RawSubjectPublicKeyInfo, first.Leaf.RawSubjectPublicKeyInfo) {
		t.Fatal("the renewed certificate is for another key")
	}
	signed, err := renewing.Sign(f.ctx, samplePDF("after renewal"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	if r := pdfsig(t, f.nssdir, signed); len(r.Signatures) != 1 || r.Signatures[0] != "Signature is Valid." || r.Certs[0] != "Certificate is Trusted." {
		t.Fatalf("pdfsig after renewal:\n%s", r.Raw)
	}
}

// The time a signature claims for itself proves nothing: judged years after
// its certificate expired, a signature is not trusted, whatever signing time
// it carries; a timestamp by a trusted authority proves when it existed, and
// then the chain is judged at that time. A timestamp by an authority nobody
// trusts proves no time.
func TestChainIsJudgedAtAProvenTime(t *testing.T) {
	url, tsaCert := tsa(t)
	f := newFixture(t, func(c *signing.Config) { c.TSA = url })
	signed, err := f.signer.Sign(f.ctx, samplePDF("judged later"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().AddDate(30, 0, 0) // long after the agency's certificate expired
	// The TSA's root, as an operator gives it (--tsa-root FILE).
	rootFile := filepath.Join(t.TempDir(), "tsa.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tsaCert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	trusted, err := signing.LoadCertPool(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.LoadCertPool(filepath.Join(t.TempDir(), "none.pem")); err == nil {
		t.Fatal("a missing root file was accepted")
	}
	tests := []struct {
		name     string
		opts     signing.VerifyOptions
		trusted  bool
		tsProves bool
	}{
		{"ok/now", signing.VerifyOptions{Root: f.root, TSARoots: trusted}, true, true},
		{"fail/later, no trusted timestamp authority", signing.VerifyOptions{Root: f.root, Now: later}, false, false},
		{"ok/later, the timestamp proves the time", signing.VerifyOptions{Root: f.root, TSARoots: trusted, Now: later}, true, true},
		{"fail/later, the timestamp's authority is not trusted", signing.VerifyOptions{Root: f.root, TSARoots: x509.NewCertPool(), Now: later}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := signing.VerifyWith(signed, tt.opts)
			if err != nil || len(rep.Signatures) != 1 {
				t.Fatalf("report: %+v %v", rep, err)
			}
			s := rep.Signatures[0]
			if !s.Valid || s.ChainTrusted != tt.trusted || s.Timestamp == nil || s.Timestamp.Trusted != tt.tsProves || s.SigningTime.IsZero() {
				t.Fatalf("signature: %+v timestamp %+v", s, s.Timestamp)
			}
			if !tt.trusted && !strings.Contains(s.ChainError, "expired") {
				t.Fatalf("chain error %q does not say expired", s.ChainError)
			}
		})
	}
}

// Bytes appended after the last signature are signed by nobody: a page
// replaced in a later incremental update makes the file not valid, though
// the signature over its own revision still holds; pdfsig agrees that the
// document is not totally signed.
func TestContentAppendedAfterTheLastSignatureIsNotValid(t *testing.T) {
	f := newFixture(t)
	signed, err := f.signer.Sign(f.ctx, samplePDF("số tiền / amount: 100 VND"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := signing.Verify(signed, f.root)
	if err != nil || !rep.Valid {
		t.Fatalf("as signed: %+v %v", rep, err)
	}
	// An incremental update anyone could append: a new object and a
	// trailer pointing at the old cross-reference.
	appended := append(bytes.Clone(signed), []byte("\n99 0 obj\n<< /Forged true >>\nendobj\n")...)
	rep, err = signing.Verify(appended, f.root)
	if err != nil || len(rep.Signatures) != 1 {
		t.Fatalf("appended: %+v %v", rep, err)
	}
	if rep.Valid || !rep.Signatures[0].Valid || !rep.Signatures[0].LaterRevisions || !strings.Contains(rep.Error, "whole file") {
		t.Fatalf("appended content: %+v", rep)
	}
	r := pdfsig(t, f.nssdir, appended)
	if !strings.Contains(r.Raw, "Not total document signed") {
		t.Fatalf("pdfsig:\n%s", r.Raw)
	}
}

// The visible stamp speaks Vietnamese: Poppler renders its glyphs (drawn
// as outlines of a font that covers Vietnamese), and the field's /TU
// gives screen readers the same words, diacritics included.
func TestVisibleStampRendersVietnamese(t *testing.T) {
	f := newFixture(t, func(c *signing.Config) { c.Visible = true })
	original := samplePDF("con dấu / stamp")
	signed, err := f.signer.Sign(f.ctx, original, signing.Options{Agency: agencyJ, ResultCode: "000.06.16.G09-231215-0001-KQ1"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(signed[len(original):], []byte("/Helvetica")) {
		t.Fatal("the stamp uses a standard font, which has no Vietnamese letters")
	}
	model.ConfigPath = "disable"
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	ctx, err := pdfapi.ReadContext(bytes.NewReader(signed), conf)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range ctx.XRefTable.Table {
		d, ok := e.Object.(types.Dict)
		if !ok || d.NameEntry("FT") == nil {
			continue
		}
		if tu, ok := d.Find("TU"); ok {
			s, err := types.StringOrHexLiteral(tu)
			found = err == nil && strings.HasPrefix(*s, "Ký bởi / Signed by: — Ba Dinh District Justice Office") && strings.Contains(*s, "Kết quả / Result: 000.06.16.G09-231215-0001-KQ1")
			if !found {
				t.Fatalf("/TU = %v %v", s, err)
			}
		}
	}
	if !found {
		t.Fatal("the signature field has no /TU")
	}
	// Rendered by Poppler at 72 dpi: the stamp's box, top right of an A4
	// page (595 x 842), holds ink.
	dir := t.TempDir()
	if out, err := exec.Command("pdftoppm", "-r", "72", "-f", "1", "-l", "1", "-gray", "-x", "365", "-y", "10", "-W", "220", "-H", "60", writeTemp(t, signed), filepath.Join(dir, "stamp")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "stamp*.pgm"))
	if len(matches) != 1 {
		t.Fatalf("pdftoppm wrote %v", matches)
	}
	img, _ := os.ReadFile(matches[0])
	dark := 0
	for _, p := range img[len(img)-220*60:] {
		if p < 128 {
			dark++
		}
	}
	if dark < 800 {
		t.Fatalf("the stamp is nearly blank: %d dark pixels", dark)
	}
}
