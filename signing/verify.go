package signing

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"
	pdfapi "github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"

	"kho"
)

// Report is the verification of every signature in a PDF.
type Report struct {
	// Error says why a report whose signatures each hold is not valid.
	Error      string            `json:"error,omitempty"`
	Valid      bool              `json:"valid"` // every signature valid and trusted
	Signatures []SignatureReport `json:"signatures"`
}

// SignatureReport describes one signature or document timestamp.
type SignatureReport struct {
	Field string `json:"field"`
	// Kind is "signature", or "document timestamp" (PAdES B-LTA): a TSA's
	// token over the whole revision, which proves when, not who.
	Kind        string    `json:"kind"`
	Signer      string    `json:"signer"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	SigningTime time.Time `json:"signing_time"` // claimed (/M), or the document timestamp's time
	// Level is what is present: B-B; B-T with a timestamp token on the
	// signature; B-LT when the DSS also holds the signer's and the
	// timestamp authority's chains with a CRL for each certificate; B-LTA
	// when a document timestamp covers that DSS. "not PAdES (...)" for
	// other kinds of signature.
	Level        string `json:"level"`
	Valid        bool   `json:"valid"` // the signed bytes are unchanged and the signature holds
	ChainTrusted bool   `json:"chain_trusted"`
	ChainError   string `json:"chain_error,omitempty"`
	// Revocation is "good" or "revoked" when a CRL in the DSS covers every
	// certificate of the chain, else "unknown" (kho never fetches one
	// while verifying).
	Revocation string `json:"revocation,omitempty"`
	// LaterRevisions is set when bytes were appended after this signature
	// (later incremental updates, such as another signature); the signed
	// revision itself is intact when Valid is set.
	LaterRevisions bool             `json:"later_revisions"`
	Timestamp      *TimestampReport `json:"timestamp,omitempty"`
	Error          string           `json:"error,omitempty"`

	covers int64 // where the signed revision ends
}

// TimestampReport describes a signature's RFC 3161 timestamp.
type TimestampReport struct {
	Valid     bool      `json:"valid"`   // the token verifies and is over this signature
	Trusted   bool      `json:"trusted"` // its authority chains to a trusted TSA root: its time counts
	Time      time.Time `json:"time"`
	Authority string    `json:"authority"`
	Error     string    `json:"error,omitempty"`
}

// Verify checks every signature of pdf; root is the deployment's root CA.
// It takes files from anyone: a panic while parsing one is a refusal of that
// file, not a crash.
func Verify(pdf []byte, root *x509.Certificate) (*Report, error) {
	return VerifyWith(pdf, VerifyOptions{Root: root})
}

// LoadCertPool reads PEM certificates (one file, one or more certificates)
// into a pool, for TSARoots.
func LoadCertPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, kho.WrapError(kho.EINVALID, "signing: read "+f, err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, kho.Errorf(kho.EINVALID, "signing: %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// VerifyOptions says what to trust and when "now" is.
type VerifyOptions struct {
	Root *x509.Certificate // the deployment's root CA
	// TSARoots are the timestamp authorities' roots whose tokens prove
	// when a signature existed; without them no timestamp proves a time.
	TSARoots *x509.CertPool
	Now      time.Time // default time.Now()
}

// VerifyWith checks every signature of pdf as opts says. A signer's chain
// is evaluated at the time a trusted timestamp proves, else now: the time a
// signature claims for itself (CMS signing-time or /M) proves nothing, so a
// back-dated signature by an expired certificate is not trusted.
func VerifyWith(pdf []byte, opts VerifyOptions) (rep *Report, err error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	root := opts.Root
	defer func() {
		if r := recover(); r != nil {
			rep, err = nil, kho.Errorf(kho.EINVALID, "the file is not a PDF kho can read")
		}
	}()
	pdfcpuOnce.Do(func() { model.ConfigPath = "disable" })
	ctx, err := pdfapi.ReadContext(bytes.NewReader(pdf), pdfConfig())
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "the file is not a PDF kho can read", err)
	}
	xt := ctx.XRefTable
	cat, err := xt.Catalog()
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "the PDF has no catalog", err)
	}
	rep = &Report{Signatures: []SignatureReport{}}
	af, ok := cat.Find("AcroForm")
	if !ok {
		return rep, nil
	}
	acro, err := xt.DereferenceDict(af)
	if err != nil || acro == nil {
		return rep, nil
	}
	fieldsObj, _ := acro.Find("Fields")
	fields, _ := xt.DereferenceArray(fieldsObj)
	dss := readDSS(xt, cat)
	type entry struct {
		name string
		sig  types.Dict
	}
	var entries []entry
	// Each field once, and a bounded number of them: a form whose fields
	// list each other many times over is a small file and a huge tree.
	seen, visits := map[int]bool{}, 0
	var walk func(types.Array, int)
	walk = func(arr types.Array, depth int) {
		if depth > 8 {
			return
		}
		for _, o := range arr {
			if r, ok := o.(types.IndirectRef); ok {
				if seen[r.ObjectNumber.Value()] {
					continue
				}
				seen[r.ObjectNumber.Value()] = true
			}
			if visits++; visits > maxFields {
				return
			}
			d, err := xt.DereferenceDict(o)
			if err != nil || d == nil {
				continue
			}
			if kids, ok := d.Find("Kids"); ok {
				if k, err := xt.DereferenceArray(kids); err == nil {
					walk(k, depth+1)
				}
			}
			if ft := d.NameEntry("FT"); ft == nil || *ft != "Sig" {
				continue
			}
			v, ok := d.Find("V")
			if !ok {
				continue
			}
			sig, err := xt.DereferenceDict(v)
			if err != nil || sig == nil {
				continue
			}
			name := ""
			if t, ok := d.Find("T"); ok {
				if s, err := types.StringOrHexLiteral(t); err == nil && s != nil {
					name = *s
				}
			}
			entries = append(entries, entry{name, sig})
		}
	}
	walk(fields, 0)
	// Document timestamps first: a signature reaches B-LTA through one.
	var docTS []SignatureReport
	for _, e := range entries {
		if t := e.sig.NameEntry("Type"); t != nil && *t == "DocTimeStamp" {
			docTS = append(docTS, verifyDocTimestamp(pdf, e.name, e.sig, xt, opts))
		}
	}
	for _, e := range entries {
		if t := e.sig.NameEntry("Type"); t != nil && *t == "DocTimeStamp" {
			continue
		}
		r := verifyOne(pdf, xt, e.name, e.sig, root, opts, dss)
		if r.Level == LevelLT && dss.end > 0 {
			for _, d := range docTS {
				if d.Valid && d.covers >= dss.end {
					r.Level = LevelLTA
				}
			}
		}
		rep.Signatures = append(rep.Signatures, r)
	}
	rep.Signatures = append(rep.Signatures, docTS...)
	// Valid means: every signature holds and is trusted, every document
	// timestamp's token verifies over what it covers, and what was added
	// after the last signature is only validation data (a DSS) and
	// document timestamps. Anything else appended after it (an
	// incremental update anyone can add, which can change what a page
	// shows) is signed by nobody. A timestamp that proves nothing is
	// reported, but it neither adds nor takes away validity.
	signatures, last := 0, int64(-1)
	rep.Valid = true
	for _, s := range rep.Signatures {
		if s.Kind == kindDocTimestamp {
			rep.Valid = rep.Valid && s.Valid
			continue
		}
		signatures++
		rep.Valid = rep.Valid && s.Valid && s.ChainTrusted && s.Revocation != "revoked"
		if s.Valid && s.covers > last {
			last = s.covers
		}
	}
	rep.Valid = rep.Valid && signatures > 0
	if rep.Valid && last < int64(len(pdf)) {
		if why := onlyValidationDataAfter(pdf, last, xt); why != "" {
			rep.Valid = false
			rep.Error = "content was added after the last signature (no signature covers the whole file): " + why
		}
	}
	return rep, nil
}

// maxFields bounds the form fields a verification visits.
const maxFields = 10000

const (
	kindSignature    = "signature"
	kindDocTimestamp = "document timestamp"
)

// byteRange reads and checks a signature dictionary's /ByteRange.
func byteRange(pdf []byte, xt *model.XRefTable, sig types.Dict) ([4]int64, error) {
	var rng [4]int64
	brObj, _ := sig.Find("ByteRange")
	br, err := xt.DereferenceArray(brObj)
	if err != nil || len(br) != 4 {
		return rng, errors.New("no byte range")
	}
	for i, o := range br {
		n, ok := o.(types.Integer)
		if !ok || n < 0 {
			return rng, errors.New("malformed byte range")
		}
		rng[i] = int64(n)
	}
	if rng[0] != 0 || rng[1] > rng[2] || rng[2]+rng[3] > int64(len(pdf)) {
		return rng, errors.New("byte range outside the file")
	}
	return rng, nil
}

func signedBytes(pdf []byte, rng [4]int64) []byte {
	return append(append([]byte{}, pdf[rng[0]:rng[0]+rng[1]]...), pdf[rng[2]:rng[2]+rng[3]]...)
}

// verifyDocTimestamp checks a document timestamp: an RFC 3161 token whose
// imprint is the hash of the revision it covers.
func verifyDocTimestamp(pdf []byte, field string, sig types.Dict, xt *model.XRefTable, opts VerifyOptions) SignatureReport {
	r := SignatureReport{Field: field, Kind: kindDocTimestamp, Level: "document timestamp"}
	if sf := sig.NameEntry("SubFilter"); sf == nil || *sf != "ETSI.RFC3161" {
		r.Error = "a document timestamp must be ETSI.RFC3161"
		return r
	}
	rng, err := byteRange(pdf, xt, sig)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.covers = rng[2] + rng[3]
	r.LaterRevisions = r.covers < int64(len(pdf))
	contents, err := sigContents(sig)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(contents, &raw); err != nil {
		r.Error = "the timestamp token is not DER"
		return r
	}
	t := checkTimestamp(raw.FullBytes, signedBytes(pdf, rng), opts.TSARoots)
	r.Timestamp, r.Valid, r.SigningTime, r.Signer = t, t.Valid, t.Time, t.Authority
	r.ChainTrusted = t.Trusted
	if !t.Valid {
		r.Error = t.Error
	} else if !t.Trusted {
		r.ChainError = t.Error
	}
	return r
}

func verifyOne(pdf []byte, xt *model.XRefTable, field string, sig types.Dict, root *x509.Certificate, opts VerifyOptions, dss *dssData) SignatureReport {
	r := SignatureReport{Field: field, Kind: kindSignature, Level: LevelB}
	if sf := sig.NameEntry("SubFilter"); sf != nil && *sf != "ETSI.CAdES.detached" {
		r.Level = "not PAdES (" + *sf + ")"
	}
	fail := func(format string, args ...any) SignatureReport {
		r.Error = fmt.Sprintf(format, args...)
		return r
	}
	rng, err := byteRange(pdf, xt, sig)
	if err != nil {
		return fail("%v", err)
	}
	r.LaterRevisions = rng[2]+rng[3] < int64(len(pdf))
	contents, err := sigContents(sig)
	if err != nil {
		return fail("%v", err)
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(contents, &raw); err != nil {
		return fail("the signature is not DER")
	}
	p7, err := pkcs7.Parse(raw.FullBytes)
	if err != nil {
		return fail("the signature is not CMS: %v", err)
	}
	p7.Content = signedBytes(pdf, rng)
	leaf := p7.GetOnlySigner()
	if leaf == nil {
		return fail("the signature names no single signer")
	}
	r.Signer, r.Issuer, r.Serial = leaf.Subject.CommonName, leaf.Issuer.CommonName, leaf.SerialNumber.Text(16)
	_ = p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &r.SigningTime)
	if r.SigningTime.IsZero() {
		// PAdES baseline puts the claimed time in /M, not in the CMS.
		if m, ok := sig.Find("M"); ok {
			if s, err := types.StringOrHexLiteral(m); err == nil && s != nil {
				if t, ok := types.DateTime(*s, true); ok {
					r.SigningTime = t
				}
			}
		}
	}
	if err := p7.Verify(); err != nil {
		return fail("the signed bytes were changed or the signature is broken: %v", err)
	}
	r.Valid, r.covers = true, rng[2]+rng[3]
	pades := !strings.HasPrefix(r.Level, "not")
	var tsaCerts []*x509.Certificate
	if len(p7.Signers) == 1 {
		for _, a := range p7.Signers[0].UnauthenticatedAttributes {
			if a.Type.Equal(oidTimeStampToken) {
				r.Timestamp = checkTimestamp(a.Value.Bytes, p7.Signers[0].EncryptedDigest, opts.TSARoots)
				// B-T needs a time that counts: a token that verifies,
				// from a trusted timestamp authority.
				if pades && r.Timestamp.Valid && r.Timestamp.Trusted {
					r.Level = LevelT
					if ts, err := timestamp.Parse(a.Value.Bytes); err == nil {
						tsaCerts = ts.Certificates
					}
				}
			}
		}
	}
	if root == nil {
		r.ChainError = "no deployment root given"
		return r
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range append(append([]*x509.Certificate{}, p7.Certificates...), dss.certs...) {
		if !c.Equal(leaf) {
			inter.AddCert(c)
		}
	}
	// The claimed signing time is only a claim: a trusted timestamp
	// proves when the signature existed, else it is judged now.
	at := opts.Now
	if r.Timestamp != nil && r.Timestamp.Valid && r.Timestamp.Trusted {
		at = r.Timestamp.Time
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		r.ChainError = err.Error()
		return r
	}
	r.ChainTrusted = true
	// Revocation, from the CRLs in the DSS only.
	r.Revocation = "good"
	complete := true
	for _, c := range chains[0][:len(chains[0])-1] {
		status, when := dss.status(c, chains[0])
		switch status {
		case "revoked":
			if !when.After(at) {
				r.Revocation, r.ChainTrusted = "revoked", false
				r.ChainError = fmt.Sprintf("%q was revoked on %s", c.Subject.CommonName, when.UTC().Format(time.RFC3339))
				return r
			}
		case "unknown":
			complete = false
		}
	}
	if !complete {
		r.Revocation = "unknown"
	}
	// B-LT: the DSS holds what validates both the signer and the
	// timestamp authority offline.
	if r.Level == LevelT && complete && dss.holds(chains[0]) && dss.coversTSA(tsaCerts) {
		r.Level = LevelLT
	}
	return r
}

// dssData is what a PDF's Document Security Store holds.
type dssData struct {
	certs []*x509.Certificate
	crls  []*x509.RevocationList
	end   int64 // where the revision that wrote the DSS ends; 0 when none
}

// readDSS reads the catalog's DSS, ignoring what does not parse.
func readDSS(xt *model.XRefTable, cat types.Dict) *dssData {
	d := &dssData{}
	o, ok := cat.Find("DSS")
	if !ok {
		return d
	}
	dict, err := xt.DereferenceDict(o)
	if err != nil || dict == nil {
		return d
	}
	streams := func(key string, each func([]byte)) {
		a, _ := dict.Find(key)
		arr, err := xt.DereferenceArray(a)
		if err != nil {
			return
		}
		for _, it := range arr {
			sd, _, err := xt.DereferenceStreamDict(it)
			if err != nil || sd == nil {
				continue
			}
			if err := sd.Decode(); err != nil {
				continue
			}
			each(sd.Content)
		}
	}
	streams("Certs", func(b []byte) {
		if c, err := x509.ParseCertificate(b); err == nil {
			d.certs = append(d.certs, c)
		}
	})
	streams("CRLs", func(b []byte) {
		if l, err := x509.ParseRevocationList(b); err == nil {
			d.crls = append(d.crls, l)
		}
	})
	if ref, ok := o.(types.IndirectRef); ok {
		d.end = revisionEnd(xt, ref.ObjectNumber.Value())
	}
	return d
}

// revisionEnd is the offset of the %%EOF that ends the revision in which
// object n was last written, or 0 when unknown.
func revisionEnd(xt *model.XRefTable, n int) int64 {
	off := objectOffset(xt, n)
	if off < 0 {
		return 0
	}
	return off + 1 // any document timestamp covering beyond the object covers its revision
}

// objectOffset is where object n's latest version starts in the file (for
// a compressed object, its object stream's), or -1.
func objectOffset(xt *model.XRefTable, n int) int64 {
	e, ok := xt.FindTableEntryLight(n)
	if !ok || e == nil || e.Free {
		return -1
	}
	if e.Compressed && e.ObjectStream != nil {
		return objectOffset(xt, *e.ObjectStream)
	}
	if e.Offset == nil {
		return -1
	}
	return *e.Offset
}

// status says whether a CRL in the DSS, signed by c's issuer in chain,
// lists c: "good", "revoked" (with when) or "unknown" (no such CRL).
func (d *dssData) status(c *x509.Certificate, chain []*x509.Certificate) (string, time.Time) {
	var issuer *x509.Certificate
	for _, i := range chain {
		if bytes.Equal(i.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(i) == nil {
			issuer = i
		}
	}
	if issuer == nil {
		return "unknown", time.Time{}
	}
	status := "unknown"
	for _, l := range d.crls {
		if !bytes.Equal(l.RawIssuer, issuer.RawSubject) || l.CheckSignatureFrom(issuer) != nil {
			continue
		}
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return "revoked", e.RevocationTime
			}
		}
		status = "good"
	}
	return status, time.Time{}
}

// holds says whether the DSS has every certificate of chain.
func (d *dssData) holds(chain []*x509.Certificate) bool {
	for _, c := range chain {
		found := false
		for _, h := range d.certs {
			found = found || h.Equal(c)
		}
		if !found {
			return false
		}
	}
	return true
}

// coversTSA says whether the DSS validates the timestamp authority: its
// certificates, and a CRL for each one that is not self-signed.
func (d *dssData) coversTSA(certs []*x509.Certificate) bool {
	if !d.holds(certs) {
		return false
	}
	for _, c := range certs {
		if selfSigned(c) {
			continue
		}
		if st, _ := d.status(c, append(append([]*x509.Certificate{}, certs...), d.certs...)); st != "good" {
			return false
		}
	}
	return true
}

// checkTimestamp verifies an RFC 3161 token over data: a signature value,
// or a revision's signed bytes. A token that carries no certificate cannot
// be verified and is not valid; a valid one proves a time only when its
// authority chains to a trusted TSA root.
func checkTimestamp(token, data []byte, tsaRoots *x509.CertPool) *TimestampReport {
	t := &TimestampReport{}
	ts, err := timestamp.Parse(token)
	if err != nil {
		t.Error = "the timestamp token does not verify: " + err.Error()
		return t
	}
	t.Time = ts.Time
	if len(ts.Certificates) == 0 {
		t.Error = "the timestamp token carries no certificate to verify it with"
		return t
	}
	t.Authority = ts.Certificates[0].Subject.CommonName
	var h hash.Hash
	switch len(ts.HashedMessage) {
	case sha256.Size:
		h = sha256.New()
	case sha512.Size384:
		h = sha512.New384()
	case sha512.Size:
		h = sha512.New()
	default:
		t.Error = "the timestamp's hash algorithm is not supported"
		return t
	}
	h.Write(data)
	if !bytes.Equal(ts.HashedMessage, h.Sum(nil)) {
		t.Error = "the timestamp is for other data"
		return t
	}
	t.Valid = true
	// The certificate to trust is the one that signed the token, not
	// whichever the token lists first.
	p7, err := pkcs7.Parse(token)
	if err != nil {
		t.Valid, t.Error = false, "the timestamp token is not CMS: "+err.Error()
		return t
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		t.Valid, t.Error = false, "the timestamp token names no single signer"
		return t
	}
	t.Authority = signer.Subject.CommonName
	if !timestampingOnly(signer) {
		t.Error = "the timestamp authority's certificate is not for timestamping alone (RFC 3161 asks for one critical extended key usage, id-kp-timeStamping)"
		return t
	}
	if tsaRoots != nil {
		inter := x509.NewCertPool()
		for _, c := range ts.Certificates {
			if !c.Equal(signer) {
				inter.AddCert(c)
			}
		}
		_, err := signer.Verify(x509.VerifyOptions{Roots: tsaRoots, Intermediates: inter, CurrentTime: ts.Time,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}})
		t.Trusted = err == nil
		if err != nil {
			t.Error = "the timestamp authority is not trusted: " + err.Error()
		}
	}
	return t
}

// timestampingOnly checks a timestamp authority's certificate as RFC 3161
// (2.3) and OpenSSL do: its extended key usage is critical and
// id-kp-timeStamping alone.
func timestampingOnly(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37}) {
			return e.Critical && len(c.ExtKeyUsage) == 1 && c.ExtKeyUsage[0] == x509.ExtKeyUsageTimeStamping && len(c.UnknownExtKeyUsage) == 0
		}
	}
	return false
}

// sigContents reads /Contents, hex or literal.
func sigContents(sig types.Dict) ([]byte, error) {
	o, ok := sig.Find("Contents")
	if !ok {
		return nil, errors.New("the signature has no contents")
	}
	switch v := o.(type) {
	case types.HexLiteral:
		return v.Bytes()
	case types.StringLiteral:
		return types.Unescape(v.Value())
	}
	return nil, errors.New("the signature's contents are not a string")
}

// onlyValidationDataAfter compares the signed revision, which ends at end,
// with the whole file, object by object as the cross-reference sections
// say: an object whose entry changed in any way (rewritten, freed, pointed
// back at an older version, moved into another object stream) counts as
// changed. What may change: new certificates, CRLs and OCSP responses held
// by a DSS, the DSS itself, new document timestamps with new invisible
// fields, the catalog (for /DSS and /Extensions), and the AcroForm and
// pages only to list those fields. It returns what else changed, or "".
func onlyValidationDataAfter(pdf []byte, end int64, xt *model.XRefTable) string {
	old, err := pdfapi.ReadContext(bytes.NewReader(pdf[:end]), pdfConfig())
	if err != nil {
		return "the signed revision cannot be read"
	}
	oxt := old.XRefTable
	if off, _, err := lastXref(pdf); err != nil || off < end {
		return "bytes were appended that no cross-reference section accounts for"
	}
	entry := func(x *model.XRefTable, n int) *model.XRefTableEntry {
		e, ok := x.FindTableEntryLight(n)
		if !ok || e == nil || e.Free {
			return nil
		}
		return e
	}
	deref := func(x *model.XRefTable, n int) types.Object {
		e := entry(x, n)
		if e == nil || e.Generation == nil {
			return nil
		}
		o, err := x.Dereference(*types.NewIndirectRef(n, *e.Generation))
		if err != nil {
			return nil
		}
		return o
	}
	dictOf := func(o types.Object) types.Dict {
		switch v := o.(type) {
		case types.Dict:
			return v
		case types.StreamDict:
			return v.Dict
		}
		return nil
	}
	// same says whether object n has the same cross-reference entry in
	// both revisions (for a compressed object, and its object stream).
	var same func(n, depth int) bool
	same = func(n, depth int) bool {
		a, b := entry(oxt, n), entry(xt, n)
		switch {
		case a == nil || b == nil:
			return a == nil && b == nil
		case depth > 2 || a.Compressed != b.Compressed || !eqInt(a.Generation, b.Generation):
			return false
		case a.Compressed:
			return eqInt(a.ObjectStream, b.ObjectStream) && eqInt(a.ObjectStreamInd, b.ObjectStreamInd) && same(*a.ObjectStream, depth+1)
		}
		return a.Offset != nil && b.Offset != nil && *a.Offset == *b.Offset
	}
	var changed []int
	for n := range xt.Table {
		if n > 0 && !same(n, 0) {
			changed = append(changed, n)
		}
	}
	for n := range oxt.Table {
		if n > 0 && entry(oxt, n) != nil && entry(xt, n) == nil {
			return fmt.Sprintf("object %d of the signed revision was removed", n)
		}
	}
	sort.Ints(changed)
	isNew := func(n int) bool { return entry(oxt, n) == nil }
	// Every object written after the signed revision is one the final
	// cross-reference sections point at: a strict reader that rebuilds the
	// table from the objects it finds would otherwise see another file.
	// Each revision after the signed one is checked against its own
	// table: a later revision may supersede an object again.
	revStart := end
	for _, b := range eofRE.FindAllIndex(pdf[end:], -1) {
		revEnd := end + int64(b[1])
		rxt := xt
		if revEnd < int64(len(pdf)) {
			rev, err := pdfapi.ReadContext(bytes.NewReader(pdf[:revEnd]), pdfConfig())
			if err != nil {
				return "a revision after the signature cannot be read"
			}
			rxt = rev.XRefTable
		}
		for _, m := range objHeaderRE.FindAllSubmatchIndex(pdf[revStart:revEnd], -1) {
			at := revStart + int64(m[0])
			if at > 0 && !isSpace(pdf[at-1]) {
				continue
			}
			n, _ := strconv.Atoi(string(pdf[revStart+int64(m[2]) : revStart+int64(m[3])]))
			e := entry(rxt, n)
			if e == nil || e.Compressed || e.Offset == nil || *e.Offset != at {
				return fmt.Sprintf("object %d is written after the signature where no cross-reference entry points", n)
			}
		}
		revStart = revEnd
	}

	// Cross-reference streams where a startxref after the signed revision
	// points, and object streams holding changed objects: structure.
	structure := map[int]bool{}
	for _, n := range changed {
		if t := dictOf(deref(xt, n)).NameEntry("Type"); t != nil && *t == "XRef" && isNew(n) {
			structure[n] = true
		}
		if e := entry(xt, n); e != nil && e.Compressed && e.ObjectStream != nil && isNew(*e.ObjectStream) {
			structure[*e.ObjectStream] = true
		}
	}
	for _, n := range changed {
		if e := entry(xt, n); e != nil && e.Compressed && e.ObjectStream != nil && isNew(*e.ObjectStream) {
			structure[*e.ObjectStream] = true
		}
	}

	allowed := map[int]bool{}
	// The DSS in the catalog, or one it replaced: the dictionary, and the
	// certificates, CRLs and OCSP responses it lists (new streams whose
	// content parses as such), its VRI entries the same.
	derStream := func(n int, kind string) bool {
		sd, ok := deref(xt, n).(types.StreamDict)
		if !ok || !isNew(n) || sd.Decode() != nil {
			return false
		}
		switch kind {
		case "Certs", "Cert":
			_, err := x509.ParseCertificate(sd.Content)
			return err == nil
		case "CRLs", "CRL":
			_, err := x509.ParseRevocationList(sd.Content)
			return err == nil
		}
		var raw asn1.RawValue // an OCSP response or a timestamp token: DER
		rest, err := asn1.Unmarshal(sd.Content, &raw)
		return err == nil && len(rest) == 0
	}
	refs := func(d types.Dict, key string) []int {
		o, _ := d.Find(key)
		if r, ok := o.(types.IndirectRef); ok {
			if a, ok := deref(xt, r.ObjectNumber.Value()).(types.Array); ok && isNew(r.ObjectNumber.Value()) {
				allowed[r.ObjectNumber.Value()] = true
				o = a
			}
		}
		arr, _ := o.(types.Array)
		var out []int
		for _, it := range arr {
			if r, ok := it.(types.IndirectRef); ok {
				out = append(out, r.ObjectNumber.Value())
			}
		}
		return out
	}
	dss := func(n int) {
		d := dictOf(deref(xt, n))
		if d == nil || !isNew(n) {
			return
		}
		allowed[n] = true
		for _, k := range []string{"Certs", "CRLs", "OCSPs"} {
			for _, m := range refs(d, k) {
				if derStream(m, k) {
					allowed[m] = true
				}
			}
		}
		if v, ok := d.Find("VRI"); ok {
			vd := dictOf(v)
			if r, isRef := v.(types.IndirectRef); isRef && isNew(r.ObjectNumber.Value()) {
				allowed[r.ObjectNumber.Value()] = true
				vd = dictOf(deref(xt, r.ObjectNumber.Value()))
			}
			for _, e := range vd {
				ed := dictOf(e)
				if r, isRef := e.(types.IndirectRef); isRef && isNew(r.ObjectNumber.Value()) {
					allowed[r.ObjectNumber.Value()] = true
					ed = dictOf(deref(xt, r.ObjectNumber.Value()))
				}
				for _, k := range []string{"Cert", "CRL", "OCSP"} {
					for _, m := range refs(ed, k) {
						if derStream(m, k) {
							allowed[m] = true
						}
					}
				}
				if r := ed.IndirectRefEntry("TS"); r != nil && derStream(r.ObjectNumber.Value(), "TS") {
					allowed[r.ObjectNumber.Value()] = true
				}
			}
		}
	}
	cat, _ := xt.Catalog()
	if r := cat.IndirectRefEntry("DSS"); r != nil {
		dss(r.ObjectNumber.Value())
	}
	for _, n := range changed {
		if t := dictOf(deref(xt, n)).NameEntry("Type"); t != nil && *t == "DSS" {
			dss(n)
		}
	}
	// New document timestamps: a new signature dictionary of that kind,
	// held by a new, invisible signature field.
	widgets := map[int]bool{}
	for _, n := range changed {
		d := dictOf(deref(xt, n))
		if d == nil || !isNew(n) {
			continue
		}
		ft, v, st := d.NameEntry("FT"), d.IndirectRefEntry("V"), d.NameEntry("Subtype")
		if ft == nil || *ft != "Sig" || st == nil || *st != "Widget" || v == nil || !isNew(v.ObjectNumber.Value()) || !onlyKeys(d, widgetKeys) {
			continue
		}
		sig := dictOf(deref(xt, v.ObjectNumber.Value()))
		t, sf := sig.NameEntry("Type"), sig.NameEntry("SubFilter")
		if t == nil || *t != "DocTimeStamp" || sf == nil || *sf != "ETSI.RFC3161" || !onlyKeys(sig, docTimestampKeys) {
			continue
		}
		if r, ok := d.Find("Rect"); ok {
			if a, err := xt.DereferenceArray(r); err == nil && len(a) == 4 && a[0].PDFString() == a[2].PDFString() && a[1].PDFString() == a[3].PDFString() {
				widgets[n], allowed[n], allowed[v.ObjectNumber.Value()] = true, true, true
			}
		}
	}
	sameExcept := func(a, b types.Dict, skip ...string) bool {
		for _, pair := range [2][2]types.Dict{{a, b}, {b, a}} {
			for k, v := range pair[0] {
				if slices.Contains(skip, k) {
					continue
				}
				w, ok := pair[1][k]
				if !ok || (v == nil) != (w == nil) || (v != nil && v.PDFString() != w.PDFString()) {
					return false
				}
			}
		}
		return true
	}
	// grows says that key's array in b is a's plus new timestamp fields.
	grows := func(a, b types.Dict, key string) bool {
		oa, _ := a.Find(key)
		na, _ := b.Find(key)
		if r, ok := na.(types.IndirectRef); ok && !same(r.ObjectNumber.Value(), 0) {
			return false // an indirect array rewritten: not checked, not allowed
		}
		was, _ := oxt.DereferenceArray(oa)
		is, _ := xt.DereferenceArray(na)
		if len(is) < len(was) {
			return false
		}
		for i, o := range is {
			if i < len(was) {
				if o.PDFString() != was[i].PDFString() {
					return false
				}
				continue
			}
			r, ok := o.(types.IndirectRef)
			if !ok || !widgets[r.ObjectNumber.Value()] {
				return false
			}
		}
		return true
	}
	acroOK := func(a, b types.Dict) bool {
		return a != nil && b != nil && sameExcept(a, b, "Fields", "SigFlags") && grows(a, b, "Fields")
	}
	rootNum := -1
	if xt.Root != nil && oxt.Root != nil && xt.Root.ObjectNumber.Value() == oxt.Root.ObjectNumber.Value() {
		rootNum = xt.Root.ObjectNumber.Value()
	} else {
		return "the catalog was replaced"
	}
	var acroRef *types.IndirectRef
	if o, ok := cat.Find("AcroForm"); ok {
		if r, ok := o.(types.IndirectRef); ok {
			acroRef = &r
		}
	}
	// What may point at what was allowed: the catalog at its DSS, a DSS
	// (or its VRI) at what it holds, pages and the form at new fields, a
	// field at its timestamp; nothing at anything else.
	referrers := map[int][]int{}
	for n := range xt.Table {
		if n == 0 || entry(xt, n) == nil {
			continue
		}
		collectRefs(deref(xt, n), 0, func(m int) {
			if m != n {
				referrers[m] = append(referrers[m], n)
			}
		})
	}
	fields := map[int]bool{}
	if af := acroFields(xt, cat); af != nil {
		for _, o := range af {
			if r, ok := o.(types.IndirectRef); ok {
				fields[r.ObjectNumber.Value()] = true
			}
		}
	}
	for n := range widgets {
		if !fields[n] {
			return fmt.Sprintf("object %d looks like a timestamp field but the form does not list it", n)
		}
	}
	for n := range allowed {
		for _, by := range referrers[n] {
			d := dictOf(deref(xt, by))
			t := d.NameEntry("Type")
			switch {
			case widgets[n]:
				// Pages, the form and the catalog list fields; they are
				// checked below.
				if t == nil || (*t != "Page" && *t != "Catalog") {
					if acro := cat.IndirectRefEntry("AcroForm"); acro == nil || acro.ObjectNumber.Value() != by {
						return fmt.Sprintf("object %d is used by object %d", n, by)
					}
				}
			case by == rootNum || allowed[by]:
				// The catalog at a DSS, a DSS at what it holds, a field at
				// its timestamp.
			default:
				return fmt.Sprintf("object %d is used by object %d, which may not use validation data", n, by)
			}
		}
	}
	for n := range structure {
		if len(referrers[n]) > 0 {
			return fmt.Sprintf("object %d is used by object %d", n, referrers[n][0])
		}
	}
	for _, n := range changed {
		if allowed[n] || structure[n] {
			continue
		}
		d := dictOf(deref(xt, n))
		was := dictOf(deref(oxt, n))
		switch {
		case isNew(n):
			return fmt.Sprintf("object %d is new and is neither validation data nor a document timestamp", n)
		case d == nil || was == nil:
			return fmt.Sprintf("object %d was changed", n)
		case n == rootNum:
			if !sameExcept(was, d, "DSS", "Extensions", "AcroForm") {
				return "the catalog was changed"
			}
			oa, _ := was.Find("AcroForm")
			na, _ := d.Find("AcroForm")
			if _, isRef := na.(types.IndirectRef); !isRef {
				a, _ := oxt.DereferenceDict(oa)
				b, _ := xt.DereferenceDict(na)
				if (a != nil || b != nil) && !acroOK(a, b) {
					return "the form was changed"
				}
			} else if oa == nil || oa.PDFString() != na.PDFString() {
				return "the catalog's form was replaced"
			}
		case acroRef != nil && n == acroRef.ObjectNumber.Value():
			if !acroOK(was, d) {
				return "the form was changed"
			}
		default:
			t, wt := d.NameEntry("Type"), was.NameEntry("Type")
			if t == nil || *t != "Page" || wt == nil || *wt != "Page" || !sameExcept(was, d, "Annots") || !grows(was, d, "Annots") {
				return fmt.Sprintf("object %d was changed", n)
			}
		}
	}
	return ""
}

var (
	objHeaderRE = regexp.MustCompile(`(\d+)\s+\d+\s+obj\b`)
	eofRE       = regexp.MustCompile(`%%EOF[\r\n]*`)
)

func isSpace(b byte) bool {
	return b == ' ' || b == '\n' || b == '\r' || b == '\t' || b == '\f' || b == 0
}

// The entries a document timestamp's field and dictionary may have.
var (
	widgetKeys       = []string{"Type", "Subtype", "FT", "T", "TU", "TM", "V", "P", "Rect", "F"}
	docTimestampKeys = []string{"Type", "Filter", "SubFilter", "ByteRange", "Contents", "M", "Name", "Reason", "Location", "ContactInfo", "Prop_Build"}
)

func onlyKeys(d types.Dict, keys []string) bool {
	for k := range d {
		if !slices.Contains(keys, k) {
			return false
		}
	}
	return true
}

// collectRefs calls each for every object number o refers to.
func collectRefs(o types.Object, depth int, each func(int)) {
	if depth > 32 {
		return
	}
	switch v := o.(type) {
	case types.IndirectRef:
		each(v.ObjectNumber.Value())
	case types.Dict:
		for _, w := range v {
			collectRefs(w, depth+1, each)
		}
	case types.StreamDict:
		collectRefs(v.Dict, depth+1, each)
	case types.Array:
		for _, w := range v {
			collectRefs(w, depth+1, each)
		}
	}
}

// acroFields is the final form's /Fields.
func acroFields(xt *model.XRefTable, cat types.Dict) types.Array {
	af, ok := cat.Find("AcroForm")
	if !ok {
		return nil
	}
	d, err := xt.DereferenceDict(af)
	if err != nil || d == nil {
		return nil
	}
	f, _ := d.Find("Fields")
	arr, _ := xt.DereferenceArray(f)
	return arr
}

func eqInt(a, b *int) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}
