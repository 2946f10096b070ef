package signing

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
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

// SignatureReport describes one signature.
type SignatureReport struct {
	Field        string    `json:"field"`
	Signer       string    `json:"signer"`
	Issuer       string    `json:"issuer"`
	Serial       string    `json:"serial"`
	SigningTime  time.Time `json:"signing_time"`
	Level        string    `json:"level"` // B-B, or B-T with a timestamp
	Valid        bool      `json:"valid"` // the signed bytes are unchanged and the signature holds
	ChainTrusted bool      `json:"chain_trusted"`
	ChainError   string    `json:"chain_error,omitempty"`
	// LaterRevisions is set when bytes were appended after this signature
	// (later incremental updates, such as another signature); the signed
	// revision itself is intact when Valid is set.
	LaterRevisions bool             `json:"later_revisions"`
	Timestamp      *TimestampReport `json:"timestamp,omitempty"`
	Error          string           `json:"error,omitempty"`
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
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	ctx, err := pdfapi.ReadContext(bytes.NewReader(pdf), conf)
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
	var walk func(types.Array, int)
	walk = func(arr types.Array, depth int) {
		if depth > 8 {
			return
		}
		for _, o := range arr {
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
			rep.Signatures = append(rep.Signatures, verifyOne(pdf, xt, name, sig, root, opts))
		}
	}
	walk(fields, 0)
	// Valid means: every signature holds and is trusted, and one of them
	// covers the whole file. Bytes appended after the last signature (an
	// incremental update anyone can add, which can change what a page
	// shows) are signed by nobody. A timestamp that proves nothing is
	// reported, but it neither adds nor takes away validity: it lies
	// outside the signed data, where anyone can put one.
	rep.Valid = len(rep.Signatures) > 0
	whole := false
	for _, s := range rep.Signatures {
		rep.Valid = rep.Valid && s.Valid && s.ChainTrusted
		whole = whole || (s.Valid && !s.LaterRevisions)
	}
	if rep.Valid && !whole {
		rep.Valid = false
		rep.Error = "content was added after the last signature: no signature covers the whole file"
	}
	return rep, nil
}

func verifyOne(pdf []byte, xt *model.XRefTable, field string, sig types.Dict, root *x509.Certificate, opts VerifyOptions) SignatureReport {
	r := SignatureReport{Field: field, Level: "B-B"}
	if sf := sig.NameEntry("SubFilter"); sf != nil && *sf != "ETSI.CAdES.detached" {
		r.Level = "not PAdES (" + *sf + ")"
	}
	fail := func(format string, args ...any) SignatureReport {
		r.Error = fmt.Sprintf(format, args...)
		return r
	}
	brObj, _ := sig.Find("ByteRange")
	br, err := xt.DereferenceArray(brObj)
	if err != nil || len(br) != 4 {
		return fail("no byte range")
	}
	var rng [4]int64
	for i, o := range br {
		n, ok := o.(types.Integer)
		if !ok || n < 0 {
			return fail("malformed byte range")
		}
		rng[i] = int64(n)
	}
	if rng[0] != 0 || rng[1] > rng[2] || rng[2]+rng[3] > int64(len(pdf)) {
		return fail("byte range outside the file")
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
	p7.Content = append(append([]byte{}, pdf[rng[0]:rng[0]+rng[1]]...), pdf[rng[2]:rng[2]+rng[3]]...)
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
	r.Valid = true
	if len(p7.Signers) == 1 {
		for _, a := range p7.Signers[0].UnauthenticatedAttributes {
			if a.Type.Equal(oidTimeStampToken) {
				r.Timestamp = checkTimestamp(a.Value.Bytes, p7.Signers[0].EncryptedDigest, opts.TSARoots)
				if !strings.HasPrefix(r.Level, "not") && r.Timestamp.Valid {
					r.Level = "B-T"
				}
			}
		}
	}
	if root != nil {
		roots := x509.NewCertPool()
		roots.AddCert(root)
		inter := x509.NewCertPool()
		for _, c := range p7.Certificates {
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
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			r.ChainError = err.Error()
		} else {
			r.ChainTrusted = true
		}
	} else {
		r.ChainError = "no deployment root given"
	}
	return r
}

// checkTimestamp verifies an RFC 3161 token over a signature. A token that
// carries no certificate cannot be verified and is not valid; a valid one
// proves a time only when its authority chains to a trusted TSA root.
func checkTimestamp(token, signature []byte, tsaRoots *x509.CertPool) *TimestampReport {
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
	sum := sha256.Sum256(signature)
	if !bytes.Equal(ts.HashedMessage, sum[:]) {
		t.Error = "the timestamp is for another signature"
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
