package signing_test

// The corpus: PDFs signed by kho at each PAdES level and by other
// producers, with expired, back-dated and revoked signers, a forged
// timestamp, bytes altered after signing, several signatures, and content
// appended after the last one. For each, kho's verdict is compared with
// what Poppler's pdfsig and OpenSSL (cms, ts and verify, offline, with the
// CRLs taken from the PDF's DSS) say about the same file.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	pdfapi "github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"

	"kho/signing"
)

// testCA is a certificate authority made by the test, for signers Vault
// would not issue: expired ones, and ones the test revokes.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Now().AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) issue(t *testing.T, cn string, from, to time.Time, eku x509.ExtKeyUsage, crlURL string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: from, NotAfter: to, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtKeyUsage: []x509.ExtKeyUsage{eku}, BasicConstraintsValid: true}
	if eku == x509.ExtKeyUsageTimeStamping {
		tmpl.ExtKeyUsage, tmpl.ExtraExtensions = nil, []pkix.Extension{timestampingEKU()}
	}
	if crlURL != "" {
		tmpl.CRLDistributionPoints = []string{crlURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// crl is the CA's CRL listing revoked, each revoked an hour ago.
func (ca *testCA) crl(t *testing.T, revoked ...*x509.Certificate) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(24 * time.Hour), RevokedCertificateEntries: entries}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// chainedTSA runs a timestamp authority whose certificate is issued by its
// own root and names a CRL distribution point the test serves: kho must
// put that CRL in the DSS for B-LT.
func chainedTSA(t *testing.T) (string, *testCA) {
	t.Helper()
	ca := newTestCA(t, "kho corpus TSA root")
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cert, key := ca.issue(t, "kho corpus TSA", time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0), x509.ExtKeyUsageTimeStamping, srv.URL+"/tsa.crl")
	crl := ca.crl(t)
	mux.HandleFunc("/tsa.crl", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(crl) })
	mux.HandleFunc("/tsa", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := timestamp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ts := timestamp.Timestamp{HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage, Time: time.Now(),
			Nonce: req.Nonce, Policy: asn1.ObjectIdentifier{1, 2, 3, 4, 1}, AddTSACertificate: true, SerialNumber: big.NewInt(time.Now().UnixNano()),
			Certificates: []*x509.Certificate{ca.cert}}
		resp, err := ts.CreateResponseWithOpts(cert, key, crypto.SHA256)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = w.Write(resp)
	})
	return srv.URL + "/tsa", ca
}

// timestampingEKU is the critical extended key usage RFC 3161 asks of a
// timestamp authority's certificate (Go writes it non-critical).
func timestampingEKU() pkix.Extension {
	v, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: v}
}

// rotatePage appends an incremental update, as any PDF editor would, that
// rewrites page 1 with /Rotate 90.
func rotatePage(t *testing.T, pdf []byte) []byte {
	t.Helper()
	model.ConfigPath = "disable"
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	ctx, err := pdfapi.ReadContext(bytes.NewReader(pdf), conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.EnsurePageCount(); err != nil {
		t.Fatal(err)
	}
	d, ref, _, err := ctx.XRefTable.PageDict(1, false)
	if err != nil {
		t.Fatal(err)
	}
	page := d.Clone().(types.Dict)
	page.Update("Rotate", types.Integer(90))
	prev := regexp.MustCompile(`startxref\s+(\d+)\s+%%EOF\s*$`).FindSubmatch(pdf)
	var b bytes.Buffer
	b.Write(pdf)
	off := b.Len()
	fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", ref.ObjectNumber.Value(), page.PDFString())
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n%d 1\n%010d 00000 n \ntrailer\n<< /Size %d /Root %s /Prev %s >>\nstartxref\n%d\n%%%%EOF\n",
		ref.ObjectNumber.Value(), off, *ctx.XRefTable.Size, ctx.XRefTable.Root.PDFString(), prev[1], xref)
	return b.Bytes()
}

func pemOf(typ string, ders ...[]byte) []byte {
	var b bytes.Buffer
	for _, d := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: d})
	}
	return b.Bytes()
}

// opensslSign has OpenSSL make a detached CMS over data: another producer.
func opensslSign(t *testing.T, data []byte, cert *x509.Certificate, key *ecdsa.PrivateKey, extra ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	k, _ := x509.MarshalPKCS8PrivateKey(key)
	files := map[string][]byte{"data": data, "cert.pem": pemOf("CERTIFICATE", cert.Raw), "key.pem": pemOf("PRIVATE KEY", k)}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER", "-in", filepath.Join(dir, "data"),
		"-signer", filepath.Join(dir, "cert.pem"), "-inkey", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "sig")}, extra...)
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -sign: %v\n%s", err, out)
	}
	sig, _ := os.ReadFile(filepath.Join(dir, "sig"))
	return sig
}

// signWithOpenSSL signs pdf with OpenSSL under the given SubFilter, /M
// claiming the time m.
func signWithOpenSSL(t *testing.T, pdf []byte, subFilter string, m time.Time, cert *x509.Certificate, key *ecdsa.PrivateKey, extra ...string) []byte {
	t.Helper()
	data, embed, err := signing.PrepareSignatureForTest(pdf, subFilter, m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := embed(opensslSign(t, data, cert, key, extra...))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawSignature is a signature as an outsider reads it from the file: its
// SubFilter, byte range and /Contents, found with regular expressions and
// not with kho's parser.
type rawSignature struct {
	subFilter string
	signed    []byte // the bytes the byte range covers
	contents  []byte // the DER object in /Contents, padding removed
}

var sigRE = regexp.MustCompile(`/SubFilter /([A-Za-z0-9.]+) /ByteRange \[(\d+) (\d+) (\d+) (\d+)\] /Contents <([0-9a-fA-F]+)>`)

func rawSignatures(t *testing.T, pdf []byte) []rawSignature {
	t.Helper()
	var out []rawSignature
	for _, m := range sigRE.FindAllSubmatch(pdf, -1) {
		var r [4]int
		for i := range r {
			r[i], _ = strconv.Atoi(string(m[2+i]))
		}
		b, err := hex.DecodeString(string(m[6]))
		if err != nil {
			t.Fatal(err)
		}
		var raw asn1.RawValue
		if _, err := asn1.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, rawSignature{subFilter: string(m[1]), signed: append(append([]byte{}, pdf[r[0]:r[0]+r[1]]...), pdf[r[2]:r[2]+r[3]]...), contents: raw.FullBytes})
	}
	return out
}

// signatureTimestamp digs the RFC 3161 token and the signature value out
// of a CMS SignedData with encoding/asn1 alone.
func signatureTimestamp(t *testing.T, cms []byte) (token, sigValue []byte) {
	t.Helper()
	type attribute struct {
		Type   asn1.ObjectIdentifier
		Values asn1.RawValue `asn1:"set"`
	}
	type signerInfo struct {
		Version            int
		SID                asn1.RawValue
		DigestAlgorithm    asn1.RawValue
		Signed             asn1.RawValue `asn1:"optional,tag:0"`
		SignatureAlgorithm asn1.RawValue
		Signature          []byte
		Unsigned           []attribute `asn1:"optional,tag:1"`
	}
	type signedData struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		Content          asn1.RawValue
		Certificates     asn1.RawValue `asn1:"optional,tag:0"`
		CRLs             asn1.RawValue `asn1:"optional,tag:1"`
		SignerInfos      []signerInfo  `asn1:"set"`
	}
	var ci struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(cms, &ci); err != nil {
		t.Fatal(err)
	}
	var sd signedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	si := sd.SignerInfos[0]
	for _, a := range si.Unsigned {
		if a.Type.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}) {
			return a.Values.Bytes, si.Signature
		}
	}
	return nil, si.Signature
}

// dssContents reads the DSS with pdfcpu: the certificates and CRLs an
// outsider would hand to OpenSSL.
func dssContents(t *testing.T, pdf []byte) (certs, crls [][]byte) {
	t.Helper()
	model.ConfigPath = "disable"
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	ctx, err := pdfapi.ReadContext(bytes.NewReader(pdf), conf)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := ctx.XRefTable.Catalog()
	o, ok := cat.Find("DSS")
	if !ok {
		return nil, nil
	}
	dss, _ := ctx.XRefTable.DereferenceDict(o)
	read := func(key string) [][]byte {
		a, _ := dss.Find(key)
		arr, _ := ctx.XRefTable.DereferenceArray(a)
		var out [][]byte
		for _, it := range arr {
			sd, _, err := ctx.XRefTable.DereferenceStreamDict(it.(types.IndirectRef))
			if err != nil || sd == nil || sd.Decode() != nil {
				t.Fatalf("DSS %s: %v", key, err)
			}
			out = append(out, sd.Content)
		}
		return out
	}
	return read("Certs"), read("CRLs")
}

// openssl runs openssl in dir and says whether it succeeded, with its output.
func openssl(t *testing.T, dir string, args ...string) (bool, string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return err == nil, string(out)
}

// outsider is what pdfsig and OpenSSL say about one signature.
type outsider struct {
	pdfsigSignature, pdfsigCert string // pdfsig's two validation lines
	pdfsigTime                  time.Time
	pdfsigTotal                 bool   // "Total document signed"
	cmsValid                    bool   // openssl cms -verify -noverify: the signature over the bytes
	chainValid                  bool   // openssl cms -verify with the trust anchor (and the DSS's CRLs)
	chainOutput                 string // why not
	tokenValid                  *bool  // openssl ts -verify on its timestamp, when it has one
	tokenOutput                 string
	dssChainValid               *bool // openssl verify -crl_check_all from the DSS alone, for B-LT
}

type corpusCase struct {
	name    string
	pdf     []byte
	root    *x509.Certificate // the trust anchor for kho, pdfsig and OpenSSL
	tsaRoot *x509.Certificate // trusted timestamp authority root, if any
	// what kho must say: the report's validity, and per signature
	valid bool
	sigs  []wantSig
}

type wantSig struct {
	valid, trusted bool
	level          string
	revocation     string
	chainError     string // a substring, when not trusted
	signingTime    time.Time
}

// pdfsigReport runs pdfsig with an NSS database trusting root (and the
// CRLs given, imported with crlutil) and splits its report by signature.
func pdfsigReport(t *testing.T, pdf []byte, root *x509.Certificate, crls [][]byte) ([]outsider, string) {
	t.Helper()
	nss := nssDB(t, root)
	for _, c := range crls {
		f := filepath.Join(t.TempDir(), "crl.der")
		_ = os.WriteFile(f, c, 0o644)
		if out, err := exec.Command("crlutil", "-I", "-d", "sql:"+nss, "-i", f, "-B").CombinedOutput(); err != nil {
			t.Fatalf("crlutil: %v\n%s", err, out)
		}
	}
	f := filepath.Join(t.TempDir(), "doc.pdf")
	_ = os.WriteFile(f, pdf, 0o644)
	cmd := exec.Command("pdfsig", "-nssdir", "sql:"+nss, f)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	raw, _ := cmd.CombinedOutput()
	var out []outsider
	for _, block := range strings.Split(string(raw), "Signature #")[1:] {
		var o outsider
		for _, line := range strings.Split(block, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
			switch {
			case strings.HasPrefix(line, "Signature Validation: "):
				o.pdfsigSignature = strings.TrimPrefix(line, "Signature Validation: ")
			case strings.HasPrefix(line, "Certificate Validation: "):
				o.pdfsigCert = strings.TrimPrefix(line, "Certificate Validation: ")
			case strings.HasPrefix(line, "Signing Time: "):
				o.pdfsigTime, _ = time.Parse("Jan 02 2006 15:04:05", strings.TrimPrefix(line, "Signing Time: "))
			case line == "Total document signed":
				o.pdfsigTotal = true
			}
		}
		out = append(out, o)
	}
	return out, string(raw)
}

// opensslReport checks each signature of pdf with OpenSSL, offline: the
// CMS, its chain to root (with the DSS's CRLs when it has any, at the
// trusted timestamp's time when there is one), its timestamp token, and
// for a document timestamp the token over the revision.
func opensslReport(t *testing.T, pdf []byte, root, tsaRoot *x509.Certificate, out []outsider) {
	t.Helper()
	dir := t.TempDir()
	dssCerts, dssCRLs := dssContents(t, pdf)
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("root.pem", pemOf("CERTIFICATE", root.Raw))
	// OpenSSL reads CRLs from the CA file too.
	write("root+crls.pem", append(pemOf("CERTIFICATE", root.Raw), pemOf("X509 CRL", dssCRLs...)...))
	write("dss-certs.pem", pemOf("CERTIFICATE", dssCerts...))
	if tsaRoot != nil {
		write("tsa.pem", append(pemOf("CERTIFICATE", tsaRoot.Raw), pemOf("X509 CRL", dssCRLs...)...))
	}
	for i, s := range rawSignatures(t, pdf) {
		if i >= len(out) {
			t.Fatalf("pdfsig saw %d signatures, the file has more", len(out))
		}
		o := &out[i]
		write("data", s.signed)
		write("sig.der", s.contents)
		if s.subFilter == "ETSI.RFC3161" {
			// A document timestamp: the token over the revision.
			if tsaRoot != nil {
				ok, msg := openssl(t, dir, "ts", "-verify", "-in", "sig.der", "-token_in", "-data", "data", "-CAfile", "tsa.pem")
				o.tokenValid, o.chainOutput = &ok, msg
			}
			continue
		}
		o.cmsValid, _ = openssl(t, dir, "cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.der", "-content", "data", "-noverify", "-out", "/dev/null")
		args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.der", "-content", "data", "-purpose", "any", "-out", "/dev/null"}
		if len(dssCerts) > 0 {
			args = append(args, "-certfile", "dss-certs.pem")
		}
		if len(dssCRLs) > 0 {
			args = append(args, "-CAfile", "root+crls.pem", "-crl_check_all")
		} else {
			args = append(args, "-CAfile", "root.pem")
		}
		token, sigValue := signatureTimestamp(t, s.contents)
		if token != nil && tsaRoot != nil {
			write("token.der", token)
			sum := sha256.Sum256(sigValue)
			ok, msg := openssl(t, dir, "ts", "-verify", "-in", "token.der", "-token_in", "-digest", hex.EncodeToString(sum[:]), "-CAfile", "tsa.pem")
			o.tokenValid, o.tokenOutput = &ok, msg
			if ok {
				// The token proves the time: the chain is judged then.
				ts, err := timestamp.Parse(token)
				if err != nil {
					t.Fatal(err)
				}
				args = append(args, "-attime", strconv.FormatInt(ts.Time.Unix(), 10))
			}
		}
		o.chainValid, o.chainOutput = openssl(t, dir, args...)
		if len(dssCRLs) > 0 {
			// B-LT: the DSS alone validates the signer, CRLs included.
			// openssl writes the signer's certificate to signer.pem.
			if ok, _ := openssl(t, dir, "cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.der", "-content", "data", "-noverify", "-signer", "signer.pem", "-out", "/dev/null"); ok {
				ok, _ := openssl(t, dir, "verify", "-crl_check_all", "-CAfile", "root+crls.pem", "-untrusted", "dss-certs.pem", "-purpose", "any", "signer.pem")
				o.dssChainValid = &ok
			}
		}
	}
}

func TestCorpusAgreesWithPdfsigAndOpenSSL(t *testing.T) {
	tsaURL, tsaCA := chainedTSA(t)
	cases := []corpusCase{}
	now := time.Now().UTC().Truncate(time.Second)

	// kho's own signatures at each level.
	for _, level := range []string{signing.LevelB, signing.LevelT, signing.LevelLT, signing.LevelLTA} {
		f := newFixture(t, func(c *signing.Config) {
			c.Level = level
			if level != signing.LevelB {
				c.TSA = tsaURL
			}
		})
		signed, err := f.signer.SignPDF(f.ctx, agencyJ, "", samplePDF("kho "+level), "")
		if err != nil {
			t.Fatalf("%s: %v", level, err)
		}
		revocation := "unknown"
		if level == signing.LevelLT || level == signing.LevelLTA {
			revocation = "good"
		}
		cases = append(cases, corpusCase{name: "kho " + level, pdf: signed, root: f.root, tsaRoot: tsaCA.cert, valid: true,
			sigs: []wantSig{{valid: true, trusted: true, level: level, revocation: revocation}}})
		if level == signing.LevelLT {
			// The certificate tells a validator where its issuer's
			// certificate and CRL are: khod's /pki/.
			cert, _, err := f.signer.Certificate(f.ctx, agencyJ)
			if err != nil {
				t.Fatal(err)
			}
			if cdp, aia := cert.Leaf.CRLDistributionPoints, cert.Leaf.IssuingCertificateURL; len(cdp) != 1 || !strings.HasSuffix(cdp[0], "/pki/ca.crl") ||
				len(aia) != 1 || !strings.HasSuffix(aia[0], "/pki/ca.crt") {
				t.Fatalf("the agency's certificate points at %v and %v", cdp, aia)
			}
			// An agency and its officer sign, then one DSS serves both.
			two, err := f.signer.SignPDF(f.ctx, agencyJ, "corpus-officer.with-a-long-id", samplePDF("two signatures"), "")
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, corpusCase{name: "kho B-LT, agency and officer", pdf: two, root: f.root, tsaRoot: tsaCA.cert, valid: true,
				sigs: []wantSig{{valid: true, trusted: true, level: level, revocation: "good"}, {valid: true, trusted: true, level: level, revocation: "good"}}})
			// One byte of the first revision changed after signing.
			bad := bytes.Clone(signed)
			bad[len(samplePDF("kho "+level))/2] ^= 0x01
			cases = append(cases, corpusCase{name: "kho B-LT, altered after signing", pdf: bad, root: f.root, tsaRoot: tsaCA.cert,
				sigs: []wantSig{{valid: false}}})
			// A page rotated in an update after the DSS: not validation data.
			cases = append(cases, corpusCase{name: "kho B-LT, page changed after the DSS", pdf: rotatePage(t, signed), root: f.root, tsaRoot: tsaCA.cert,
				sigs: []wantSig{{valid: true, trusted: true, level: level, revocation: "good"}}})
			// A second DSS appended by anyone: still only validation data.
			more, err := signing.AddDSSForTest(signed, [][]byte{tsaCA.cert.Raw}, nil)
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, corpusCase{name: "kho B-LT, DSS extended", pdf: more, root: f.root, tsaRoot: tsaCA.cert, valid: true,
				sigs: []wantSig{{valid: true, trusted: true, level: level, revocation: "good"}}})
			// Content appended after the DSS: signed by nobody.
			appended := append(bytes.Clone(signed), []byte("\n99 0 obj\n<< /Forged true >>\nendobj\n")...)
			cases = append(cases, corpusCase{name: "kho B-LT, content appended", pdf: appended, root: f.root, tsaRoot: tsaCA.cert,
				sigs: []wantSig{{valid: true, trusted: true, level: level, revocation: "good"}}})
		}
	}

	// Other producers: OpenSSL signs, as adbe.pkcs7.detached and as
	// ETSI.CAdES.detached, with a certificate of the test's own CA.
	ca := newTestCA(t, "kho corpus CA")
	signer, key := ca.issue(t, "Other producer", now.Add(-time.Hour), now.AddDate(1, 0, 0), x509.ExtKeyUsageEmailProtection, "")
	for _, sf := range []string{"adbe.pkcs7.detached", "ETSI.CAdES.detached"} {
		pdf := signWithOpenSSL(t, samplePDF("OpenSSL "+sf), sf, now, signer, key)
		level := signing.LevelB
		if sf != "ETSI.CAdES.detached" {
			level = "not PAdES (" + sf + ")"
		}
		cases = append(cases, corpusCase{name: "OpenSSL " + sf, pdf: pdf, root: ca.cert, valid: true,
			sigs: []wantSig{{valid: true, trusted: true, level: level, revocation: "unknown"}}})
	}
	// Back-dated: the claimed time is years before the certificate; only a
	// claim, so the chain is judged now, and holds.
	backdated := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	cases = append(cases, corpusCase{name: "back-dated claim", root: ca.cert, valid: true,
		pdf:  signWithOpenSSL(t, samplePDF("back-dated"), "ETSI.CAdES.detached", backdated, signer, key, "-noattr"),
		sigs: []wantSig{{valid: true, trusted: true, level: signing.LevelB, revocation: "unknown", signingTime: backdated}}})
	// Expired: a certificate of 2000, the signature claiming 2000.
	old := time.Date(2000, 6, 1, 0, 0, 0, 0, time.UTC)
	expiredCert, expiredKey := ca.issue(t, "Expired signer", old.AddDate(0, -1, 0), old.AddDate(1, 0, 0), x509.ExtKeyUsageEmailProtection, "")
	cases = append(cases, corpusCase{name: "expired signer, back-dated", root: ca.cert,
		pdf:  signWithOpenSSL(t, samplePDF("expired"), "ETSI.CAdES.detached", old, expiredCert, expiredKey, "-noattr"),
		sigs: []wantSig{{valid: true, trusted: false, level: signing.LevelB, chainError: "expired", signingTime: old}}})
	// Revoked: the DSS holds a CRL that lists the signer.
	revokedCert, revokedKey := ca.issue(t, "Revoked signer", now.Add(-2*time.Hour), now.AddDate(1, 0, 0), x509.ExtKeyUsageEmailProtection, "")
	rpdf := signWithOpenSSL(t, samplePDF("revoked"), "ETSI.CAdES.detached", now, revokedCert, revokedKey)
	rpdf, err := signing.AddDSSForTest(rpdf, [][]byte{revokedCert.Raw, ca.cert.Raw}, [][]byte{ca.crl(t, revokedCert)})
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, corpusCase{name: "revoked signer", pdf: rpdf, root: ca.cert,
		sigs: []wantSig{{valid: true, trusted: false, level: signing.LevelB, revocation: "revoked", chainError: "revoked"}}})
	// Forged timestamp: a token from a look-alike authority, claiming a
	// time long ago; it proves nothing.
	forger := newTestCA(t, "kho corpus TSA root")
	forgedURL := func() string {
		cert, fkey := forger.issue(t, "kho corpus TSA", old, now.AddDate(1, 0, 0), x509.ExtKeyUsageTimeStamping, "")
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			req, _ := timestamp.ParseRequest(body)
			ts := timestamp.Timestamp{HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage, Time: old,
				Policy: asn1.ObjectIdentifier{1, 2, 3, 4, 1}, AddTSACertificate: true, SerialNumber: big.NewInt(1)}
			resp, _ := ts.CreateResponseWithOpts(cert, fkey, crypto.SHA256)
			_, _ = w.Write(resp)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}()
	ff := newFixture(t, func(c *signing.Config) { c.TSA = forgedURL })
	forged, err := ff.signer.Sign(ff.ctx, samplePDF("forged timestamp"), signing.Options{Agency: agencyJ})
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, corpusCase{name: "forged timestamp", pdf: forged, root: ff.root, tsaRoot: tsaCA.cert, valid: true,
		sigs: []wantSig{{valid: true, trusted: true, level: signing.LevelB, revocation: "unknown"}}})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkCorpusCase(t, c)
		})
	}
}

func checkCorpusCase(t *testing.T, c corpusCase) {
	opts := signing.VerifyOptions{Root: c.root}
	if c.tsaRoot != nil {
		opts.TSARoots = x509.NewCertPool()
		opts.TSARoots.AddCert(c.tsaRoot)
	}
	rep, err := signing.VerifyWith(c.pdf, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, dssCRLs := dssContents(t, c.pdf)
	out, raw := pdfsigReport(t, c.pdf, c.root, dssCRLs)
	opensslReport(t, c.pdf, c.root, c.tsaRoot, out)
	explain := func() string {
		return fmt.Sprintf("kho: %+v\npdfsig:\n%s\noutsiders: %+v", rep, raw, out)
	}
	if rep.Valid != c.valid {
		t.Fatalf("kho says valid=%v, want %v (%s)\n%s", rep.Valid, c.valid, rep.Error, explain())
	}
	var sigs []signing.SignatureReport
	var stamps []signing.SignatureReport
	for _, s := range rep.Signatures {
		if s.Kind == "signature" {
			sigs = append(sigs, s)
		} else {
			stamps = append(stamps, s)
		}
	}
	if len(sigs) != len(c.sigs) || len(out) != len(sigs)+len(stamps) {
		t.Fatalf("kho found %d signatures and %d document timestamps, pdfsig %d, want %d signatures\n%s", len(sigs), len(stamps), len(out), len(c.sigs), explain())
	}
	for i, w := range c.sigs {
		k, o := sigs[i], out[i]
		// kho against what it should say.
		if k.Valid != w.valid || (w.valid && (k.ChainTrusted != w.trusted || k.Level != w.level || k.Revocation != w.revocation)) ||
			(w.chainError != "" && !strings.Contains(k.ChainError, w.chainError)) {
			t.Fatalf("signature %d: kho %+v, want %+v\n%s", i, k, w, explain())
		}
		// The signature over its bytes: kho, pdfsig and OpenSSL agree.
		if pv := o.pdfsigSignature == "Signature is Valid."; pv != k.Valid || o.cmsValid != k.Valid {
			t.Fatalf("signature %d: kho valid=%v, pdfsig %q, openssl cms %v\n%s", i, k.Valid, o.pdfsigSignature, o.cmsValid, explain())
		}
		if !k.Valid {
			continue
		}
		// The chain: trusted, expired or revoked alike.
		if o.chainValid != k.ChainTrusted {
			t.Fatalf("signature %d: kho trusted=%v (%s), openssl %v: %s\n%s", i, k.ChainTrusted, k.ChainError, o.chainValid, o.chainOutput, explain())
		}
		switch {
		case strings.Contains(k.ChainError, "expired"):
			if o.pdfsigCert != "Certificate has Expired" || !strings.Contains(o.chainOutput, "certificate has expired") {
				t.Fatalf("expired: pdfsig %q, openssl %s", o.pdfsigCert, o.chainOutput)
			}
		case k.Revocation == "revoked":
			if !strings.Contains(o.chainOutput, "certificate revoked") || o.pdfsigCert != "Certificate has been Revoked." {
				t.Fatalf("revoked: pdfsig %q, openssl %s", o.pdfsigCert, o.chainOutput)
			}
		case k.ChainTrusted:
			if o.pdfsigCert != "Certificate is Trusted." {
				t.Fatalf("trusted: pdfsig %q\n%s", o.pdfsigCert, explain())
			}
		}
		// The claimed signing time, as pdfsig reads it.
		if !k.SigningTime.Equal(o.pdfsigTime) || (!w.signingTime.IsZero() && !k.SigningTime.Equal(w.signingTime)) {
			t.Fatalf("signature %d: kho signing time %s, pdfsig %s, want %s", i, k.SigningTime, o.pdfsigTime, w.signingTime)
		}
		// Bytes after it: pdfsig's "Total document signed" is kho's
		// LaterRevisions, read the other way.
		if o.pdfsigTotal == k.LaterRevisions {
			t.Fatalf("signature %d: kho later revisions=%v, pdfsig total=%v", i, k.LaterRevisions, o.pdfsigTotal)
		}
		// The timestamp: B-T and up exactly when OpenSSL verifies the
		// token against the trusted authority.
		tokenOK := o.tokenValid != nil && *o.tokenValid
		if hasT := k.Level == signing.LevelT || k.Level == signing.LevelLT || k.Level == signing.LevelLTA; hasT != tokenOK {
			t.Fatalf("signature %d: kho level %s, openssl ts -verify %v: %s", i, k.Level, tokenOK, o.tokenOutput)
		}
		// B-LT and up exactly when OpenSSL validates the chain and its CRLs
		// from the DSS alone.
		dssOK := o.dssChainValid != nil && *o.dssChainValid
		if hasLT := k.Level == signing.LevelLT || k.Level == signing.LevelLTA; hasLT && !dssOK {
			t.Fatalf("signature %d: kho level %s, but OpenSSL cannot validate from the DSS", i, k.Level)
		}
	}
	// Document timestamps: OpenSSL verifies each token over its revision.
	for i, s := range stamps {
		o := out[len(sigs)+i]
		if o.tokenValid == nil || *o.tokenValid != (s.Valid && s.ChainTrusted) {
			t.Fatalf("document timestamp %d: kho valid=%v trusted=%v, openssl %v %s", i, s.Valid, s.ChainTrusted, o.tokenValid, o.chainOutput)
		}
	}
	if c.name == "kho B-LTA" && (len(stamps) != 1 || !out[len(out)-1].pdfsigTotal) {
		t.Fatalf("B-LTA: the document timestamp must cover the whole file\n%s", explain())
	}
}
