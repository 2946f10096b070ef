// Package signing puts the issuing agency's signature inside PDFs: PAdES
// baseline B-B, B-T, B-LT or B-LTA (ETSI EN 319 142-1) as configured. The keys
// are Vault Transit keys that never leave Vault; each agency's certificate is
// issued for its key by the deployment's PKI in Vault, from a CSR signed
// through the same Transit key, and renewed before it expires. The CMS
// SignedData is built with github.com/digitorus/pkcs7 driven by the Transit
// crypto.Signer: one Vault call per signature once the certificate is known.
// The incremental update that carries the signature is written by
// pdfupdate.go, the project's only raw PDF byte work.
//
// signing imports the root, postgres and vault packages.
package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"
	"github.com/jackc/pgx/v5"
	pdfapi "github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"

	"kho"
	"kho/postgres"
	"kho/vault"
)

// Keys is what the signer needs from Vault; *vault.Transit meets it.
type Keys interface {
	Signer(ctx context.Context, name string) (crypto.Signer, int, error)
	SignCSR(ctx context.Context, csrPEM string, ttl time.Duration) (*vault.Certificate, error)
	RootCertificate(ctx context.Context) (*x509.Certificate, error)
	// PKIFile returns a CA certificate or CRL (vault.PKICACRL, ...), DER.
	PKIFile(ctx context.Context, name string) ([]byte, error)
}

// PAdES baseline levels (ETSI EN 319 142-1).
const (
	LevelB   = "B-B"   // the signature
	LevelT   = "B-T"   // and a timestamp on it: when it existed
	LevelLT  = "B-LT"  // and a DSS with every certificate and CRL to validate it offline
	LevelLTA = "B-LTA" // and a document timestamp over all that, to renew before algorithms age
)

var levelRank = map[string]int{LevelB: 0, LevelT: 1, LevelLT: 2, LevelLTA: 3}

// Config configures the PDF signer.
type Config struct {
	DB   *postgres.DB
	Keys Keys
	// TSA is an RFC 3161 timestamp authority's URL; levels above B-B need
	// one.
	TSA string
	// Level is the PAdES baseline level of the signatures made: B-B, B-T,
	// B-LT or B-LTA (default B-T with a TSA, else B-B).
	Level string
	// CertTTL is the life of issued certificates (default 1 year); they are
	// renewed when less than RenewBefore (default 30 days) is left.
	CertTTL, RenewBefore time.Duration
	// Visible adds a stamp top-right of page 1.
	Visible bool
	HTTP    *http.Client
}

// Signer signs PDFs for agencies.
type Signer struct {
	cfg   Config
	mu    sync.Mutex
	certs map[string]*agencyCert // by key name
	crls  map[string]cachedCRL   // by issuer's raw subject
}

type cachedCRL struct {
	der []byte
	at  time.Time
}

type agencyCert struct {
	cert    *vault.Certificate
	version int
}

// New validates cfg.
func New(cfg Config) (*Signer, error) {
	if cfg.DB == nil || cfg.Keys == nil {
		return nil, kho.Errorf(kho.EINVALID, "signing: a database and keys are required")
	}
	if cfg.CertTTL == 0 {
		cfg.CertTTL = 365 * 24 * time.Hour
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = 30 * 24 * time.Hour
	}
	if cfg.RenewBefore >= cfg.CertTTL {
		return nil, kho.Errorf(kho.EINVALID, "signing: certificates must live longer than the renewal margin")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Level == "" {
		cfg.Level = LevelB
		if cfg.TSA != "" {
			cfg.Level = LevelT
		}
	}
	rank, ok := levelRank[cfg.Level]
	switch {
	case !ok:
		return nil, kho.Errorf(kho.EINVALID, "signing: level %q is not one of B-B, B-T, B-LT, B-LTA", cfg.Level)
	case rank > 0 && cfg.TSA == "":
		return nil, kho.Errorf(kho.EINVALID, "signing: level %s needs a timestamp authority", cfg.Level)
	}
	return &Signer{cfg: cfg, certs: map[string]*agencyCert{}}, nil
}

// KeyName is the Transit key of an agency: the same key signs its manifests
// and its PDFs.
func KeyName(a kho.AgencyCode) string { return kho.AgencySigningKey(a) }

// OfficerKeyName is the Transit key of a digitizing officer of an agency, for
// the officer's personal signature on scans of paper.
func OfficerKeyName(a kho.AgencyCode, staff kho.StaffID) string {
	return "officer-" + string(a) + "-" + string(staff)
}

// identity is who signs: an agency, one of its officers, or kho itself.
type identity struct {
	agency  kho.AgencyCode
	staff   kho.StaffID // empty for the agency itself
	service *Service    // kho itself
}

// Service is kho signing in its own name (a printed consent receipt): the
// Transit key, and the name its certificate gives. Its certificates are
// kept in memory, so each khod start has one issued.
type Service struct {
	Key  string
	Name string
}

func (id identity) key() string {
	if id.service != nil {
		return id.service.Key
	}
	if id.staff != "" {
		return OfficerKeyName(id.agency, id.staff)
	}
	return KeyName(id.agency)
}

// Certificate returns the agency's current certificate for its key's latest
// version, issuing or renewing it when needed.
func (s *Signer) Certificate(ctx context.Context, agency kho.AgencyCode) (*vault.Certificate, crypto.Signer, error) {
	return s.certificate(ctx, identity{agency: agency})
}

// OfficerCertificate is Certificate for a digitizing officer of an agency.
func (s *Signer) OfficerCertificate(ctx context.Context, agency kho.AgencyCode, staff kho.StaffID) (*vault.Certificate, crypto.Signer, error) {
	return s.certificate(ctx, identity{agency: agency, staff: staff})
}

func (s *Signer) certificate(ctx context.Context, id identity) (*vault.Certificate, crypto.Signer, error) {
	agency := id.agency
	signer, version, err := s.cfg.Keys.Signer(ctx, id.key())
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	c := s.certs[id.key()]
	s.mu.Unlock()
	if c != nil && c.version == version && time.Until(c.cert.Leaf.NotAfter) > s.cfg.RenewBefore {
		return c.cert, signer, nil
	}
	if id.service != nil {
		cert, err := s.issue(ctx, id, signer, version)
		if err != nil {
			return nil, nil, err
		}
		s.mu.Lock()
		s.certs[id.key()] = &agencyCert{cert: cert, version: version}
		s.mu.Unlock()
		return cert, signer, nil
	}
	var chain string
	err = s.cfg.DB.Pool.QueryRow(ctx, `SELECT chain_pem FROM agency_certificates WHERE agency = $1 AND key_name = $2 AND key_version = $3 AND not_after > $4
		ORDER BY not_after DESC LIMIT 1`, string(agency), id.key(), version, time.Now().Add(s.cfg.RenewBefore)).Scan(&chain)
	var cert *vault.Certificate
	switch {
	case err == nil:
		certs, perr := parseChain(chain)
		if perr != nil {
			return nil, nil, kho.WrapError(kho.EINTEGRITY, "signing: stored certificate", perr)
		}
		cert = &vault.Certificate{Leaf: certs[0], Chain: certs[1:], PEM: chain}
	case errors.Is(err, pgx.ErrNoRows):
		if cert, err = s.issue(ctx, id, signer, version); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, kho.WrapError(kho.EUNAVAILABLE, "signing: read certificate", err)
	}
	s.mu.Lock()
	s.certs[id.key()] = &agencyCert{cert: cert, version: version}
	s.mu.Unlock()
	return cert, signer, nil
}

// fitCommonName keeps a certificate's common name within the 64
// characters X.520 allows (OpenSSL and others refuse longer), shortening
// head and keeping suffix, the agency's code.
func fitCommonName(head, suffix string) string {
	const max = 64
	h, sfx := []rune(head), []rune(suffix)
	if len(h)+len(sfx) <= max {
		return head + suffix
	}
	return strings.TrimSpace(string(h[:max-len(sfx)-1])) + "…" + suffix
}

func parseChain(p string) ([]*x509.Certificate, error) {
	certs, err := vault.ParsePEMCertificates(p)
	if err == nil && len(certs) < 2 {
		err = errors.New("certificate chain too short")
	}
	return certs, err
}

// issue makes a CSR signed by the Transit key and has Vault's PKI certify it.
func (s *Signer) issue(ctx context.Context, id identity, signer crypto.Signer, version int) (*vault.Certificate, error) {
	agency := id.agency
	subject := pkix.Name{Country: []string{"VN"}}
	if id.service != nil {
		subject.CommonName = fitCommonName(id.service.Name, "")
	} else {
		var name string
		if err := s.cfg.DB.Pool.QueryRow(ctx, `SELECT name_en FROM agencies WHERE code = $1`, string(agency)).Scan(&name); err != nil {
			return nil, kho.Errorf(kho.EFORBIDDEN, "agency %s is not registered in kho", agency)
		}
		subject.CommonName = fitCommonName(name, " ("+string(agency)+")")
		if id.staff != "" {
			// An officer signs in person, as a member of the agency.
			subject.CommonName = fitCommonName("Officer "+string(id.staff)+", "+name, " ("+string(agency)+")")
		}
		subject.OrganizationalUnit = []string{string(agency)}
	}
	tmpl := &x509.CertificateRequest{Subject: subject, SignatureAlgorithm: x509.ECDSAWithSHA256}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "signing: certificate request", err)
	}
	cert, err := s.cfg.Keys.SignCSR(ctx, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), s.cfg.CertTTL)
	if err != nil || id.service != nil {
		return cert, err
	}
	if _, err := s.cfg.DB.Pool.Exec(ctx, `INSERT INTO agency_certificates (agency, key_name, key_version, serial, not_after, chain_pem) VALUES ($1, $2, $3, $4, $5, $6)`,
		string(agency), id.key(), version, cert.Leaf.SerialNumber.Text(16), cert.Leaf.NotAfter, cert.PEM); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "signing: store certificate", err)
	}
	return cert, nil
}

// Options describe one signature.
type Options struct {
	Service    *Service // set: kho signs in its own name, not an agency
	Agency     kho.AgencyCode
	Officer    kho.StaffID // set: the officer of Agency signs in person
	AgencyName string      // for the stamp; the certificate's name when empty
	Reason     string
	ResultCode string
}

// OIDs of CMS attributes kho adds.
var (
	oidSigningCertificateV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidTimeStampToken       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
)

// signingCertificateV2 is RFC 5035's attribute binding the signature to its
// certificate (the SHA-256 default hash algorithm is omitted).
func signingCertificateV2(cert *x509.Certificate) (asn1.RawValue, error) {
	type issuerSerial struct {
		Issuer []asn1.RawValue
		Serial *big.Int
	}
	type essCertIDv2 struct {
		CertHash     []byte
		IssuerSerial issuerSerial
	}
	sum := sha256.Sum256(cert.Raw)
	gn := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: cert.RawIssuer}
	b, err := asn1.Marshal(struct{ Certs []essCertIDv2 }{Certs: []essCertIDv2{{CertHash: sum[:], IssuerSerial: issuerSerial{Issuer: []asn1.RawValue{gn}, Serial: cert.SerialNumber}}}})
	return asn1.RawValue{FullBytes: b}, err
}

// Sign returns pdf with the agency's signature added in an incremental
// update at the configured level; the original bytes are kept as they are.
func (s *Signer) Sign(ctx context.Context, pdf []byte, o Options) ([]byte, error) {
	signed, certs, err := s.sign(ctx, pdf, o)
	if err != nil {
		return nil, err
	}
	return s.extend(ctx, signed, certs)
}

// sign adds one signature (B-B, or B-T with the TSA) and returns the
// certificates a validator needs for it: the signer's chain and the
// timestamp authority's.
func (s *Signer) sign(ctx context.Context, pdf []byte, o Options) ([]byte, []*x509.Certificate, error) {
	cert, signer, err := s.certificate(ctx, identity{agency: o.Agency, staff: o.Officer, service: o.Service})
	if err != nil {
		return nil, nil, err
	}
	in, err := readStructure(pdf)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINVALID, "the PDF's structure cannot be signed", err)
	}
	now := time.Now().UTC()
	name := o.AgencyName
	if name == "" {
		name = cert.Leaf.Subject.CommonName
	}
	reason := o.Reason
	if reason == "" {
		reason = "Kết quả giải quyết thủ tục hành chính / Result of an administrative procedure"
	}
	in.sigDict = fmt.Sprintf("/M (D:%s+00'00') /Name %s /Reason %s /Location %s", now.Format("20060102150405"), pdfString(name), pdfString(reason), pdfString("Việt Nam"))
	in.fieldName = fmt.Sprintf("kho-signature-%d", now.UnixNano())
	if s.cfg.Visible && o.Service == nil {
		// Five lines fit the stamp; kho's own documents say in their text
		// that kho signs them.
		signerName := strings.TrimSuffix(cert.Leaf.Subject.CommonName, " ("+string(o.Agency)+")")
		in.stamp = []string{
			"Ký bởi / Signed by:",
			clip(signerName),
			clip("Cơ quan / Agency: " + string(o.Agency)),
			clip("Thời gian / Time: " + now.In(vietnam).Format("02/01/2006 15:04:05 (GMT+7)")),
		}
		if o.ResultCode != "" {
			in.stamp = append(in.stamp, clip("Kết quả / Result: "+o.ResultCode))
		} else {
			in.stamp = append(in.stamp, "kho — PAdES")
		}
	}
	p, err := buildUpdate(*in)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: incremental update", err)
	}
	cms, tsaCerts, err := s.cms(ctx, p.signedData(), cert, signer)
	if err != nil {
		return nil, nil, err
	}
	if err := p.embed(cms); err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing", err)
	}
	return p.pdf, append(append([]*x509.Certificate{cert.Leaf}, cert.Chain...), tsaCerts...), nil
}

// vietnam is the time zone stamps show (UTC+7, no daylight saving).
var vietnam = time.FixedZone("ICT", 7*3600)

// clip shortens a stamp line to the width of its box.
func clip(s string) string {
	const width = 208 // points inside the frame
	r := []rune(s)
	for n := len(r); n > 0; n-- {
		line := string(r[:n])
		if n < len(r) {
			line = strings.TrimSpace(line) + "…"
		}
		if w, err := drawText(&bytes.Buffer{}, line, 0, 0); err != nil || w <= width {
			return line
		}
	}
	return ""
}

// cms makes the detached CMS SignedData over data: one Transit call, plus
// the timestamp authority for B-T.
func (s *Signer) cms(ctx context.Context, data []byte, cert *vault.Certificate, signer crypto.Signer) ([]byte, []*x509.Certificate, error) {
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: cms", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	scv2, err := signingCertificateV2(cert.Leaf)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: signing-certificate-v2", err)
	}
	// The library adds a CMS signing-time attribute, which PAdES baseline
	// forbids (the claimed time is the signature dictionary's /M); its
	// version that can leave it out needs a newer Go than this build has.
	// So it builds the signer info with a placeholder signature, and
	// withoutSigningTime removes the attribute and signs what remains: one
	// Transit call, as before.
	if err := sd.AddSignerChain(cert.Leaf, placeholderSigner{signer}, cert.Chain[:len(cert.Chain)-1], pkcs7.SignerInfoConfig{
		ExtraSignedAttributes: []pkcs7.Attribute{{Type: oidSigningCertificateV2, Value: scv2}},
	}); err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: signer info", err)
	}
	si := &sd.GetSignedData().SignerInfos[0]
	attrs, signed, err := withoutSigningTime(si.AuthenticatedAttributes)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: signed attributes", err)
	}
	sum := sha256.Sum256(signed)
	sig, err := signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		var ke *kho.Error
		if errors.As(err, &ke) {
			return nil, nil, ke
		}
		return nil, nil, kho.WrapError(kho.EUNAVAILABLE, "signing: sign", err)
	}
	si.AuthenticatedAttributes, si.EncryptedDigest = attrs, sig
	sd.Detach()
	var tsaCerts []*x509.Certificate
	if s.cfg.Level != LevelB {
		si := &sd.GetSignedData().SignerInfos[0]
		token, certs, err := s.timestamp(ctx, si.EncryptedDigest)
		if err != nil {
			return nil, nil, err
		}
		tsaCerts = certs
		if err := si.SetUnauthenticatedAttributes([]pkcs7.Attribute{{Type: oidTimeStampToken, Value: asn1.RawValue{FullBytes: token}}}); err != nil {
			return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: timestamp attribute", err)
		}
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: cms", err)
	}
	return der, tsaCerts, nil
}

// placeholderSigner has the signer's public key but signs nothing: the
// real signature is made once the signed attributes are final.
type placeholderSigner struct{ crypto.Signer }

func (placeholderSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return []byte{0}, nil
}

// cmsAttribute is a CMS Attribute (RFC 5652, 5.3).
type cmsAttribute struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

// withoutSigningTime removes the signing-time attribute from a signer
// info's signed attributes, whose element type the library keeps to itself,
// and returns them with the DER SET OF that the signature covers.
func withoutSigningTime[A any](attrs []A) ([]A, []byte, error) {
	b, err := asn1.Marshal(struct {
		A []A `asn1:"set"`
	}{attrs})
	if err != nil {
		return nil, nil, err
	}
	var all struct {
		A []cmsAttribute `asn1:"set"`
	}
	if _, err := asn1.Unmarshal(b, &all); err != nil {
		return nil, nil, err
	}
	keep := all.A[:0]
	for _, a := range all.A {
		if !a.Type.Equal(pkcs7.OIDAttributeSigningTime) {
			keep = append(keep, a)
		}
	}
	if b, err = asn1.Marshal(struct {
		A []cmsAttribute `asn1:"set"`
	}{keep}); err != nil {
		return nil, nil, err
	}
	var out struct {
		A []A `asn1:"set"`
	}
	if _, err := asn1.Unmarshal(b, &out); err != nil {
		return nil, nil, err
	}
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(b, &seq); err != nil {
		return nil, nil, err
	}
	return out.A, seq.Bytes, nil
}

// timestamp asks the TSA to timestamp data (RFC 3161): a signature value
// for B-T, a revision's signed bytes for a document timestamp. It returns
// the token and the certificates it carries.
func (s *Signer) timestamp(ctx context.Context, data []byte) ([]byte, []*x509.Certificate, error) {
	req, err := timestamp.CreateRequest(bytes.NewReader(data), &timestamp.RequestOptions{Hash: crypto.SHA256, Certificates: true})
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINTERNAL, "signing: timestamp request", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.TSA, bytes.NewReader(req))
	if err != nil {
		return nil, nil, kho.WrapError(kho.EINVALID, "signing: timestamp authority URL", err)
	}
	hr.Header.Set("Content-Type", "application/timestamp-query")
	resp, err := s.cfg.HTTP.Do(hr)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EUNAVAILABLE, "signing: timestamp authority not reachable", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, nil, kho.Errorf(kho.EUNAVAILABLE, "signing: timestamp authority answered %s", resp.Status)
	}
	ts, err := timestamp.ParseResponse(body)
	if err != nil {
		return nil, nil, kho.WrapError(kho.EUNAVAILABLE, "signing: timestamp response", err)
	}
	sum := sha256.Sum256(data)
	if !bytes.Equal(ts.HashedMessage, sum[:]) {
		return nil, nil, kho.Errorf(kho.EUNAVAILABLE, "signing: the timestamp authority answered for other data")
	}
	return ts.RawToken, ts.Certificates, nil
}

// extend takes a freshly signed PDF to the configured level: for B-LT a
// DSS with the certificates and CRLs of every signer's and timestamp
// authority's chain, for B-LTA then a document timestamp over it all.
func (s *Signer) extend(ctx context.Context, pdf []byte, certs []*x509.Certificate) ([]byte, error) {
	if levelRank[s.cfg.Level] < levelRank[LevelLT] {
		return pdf, nil
	}
	certDER, crlDER, err := s.validationData(ctx, certs)
	if err != nil {
		return nil, err
	}
	in, err := readStructure(pdf)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "signing: read the signed PDF", err)
	}
	pdf = buildDSS(*in, certDER, crlDER)
	if s.cfg.Level != LevelLTA {
		return pdf, nil
	}
	if in, err = readStructure(pdf); err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "signing: read the PDF with its DSS", err)
	}
	in.sigKind, in.sigDict = sigDocTimestamp, ""
	in.fieldName = fmt.Sprintf("kho-timestamp-%d", time.Now().UnixNano())
	p, err := buildUpdate(*in)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "signing: document timestamp", err)
	}
	token, _, err := s.timestamp(ctx, p.signedData())
	if err != nil {
		return nil, err
	}
	if err := p.embed(token); err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "signing: document timestamp", err)
	}
	return p.pdf, nil
}

// validationData returns each distinct certificate and, for each that is
// not a self-signed trust anchor, its issuer's current CRL, checked to be
// signed by that issuer.
func (s *Signer) validationData(ctx context.Context, certs []*x509.Certificate) (certDER, crlDER [][]byte, err error) {
	seen := map[string]bool{}
	var uniq []*x509.Certificate
	for _, c := range certs {
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			uniq = append(uniq, c)
			certDER = append(certDER, c.Raw)
		}
	}
	have := map[string]bool{}
	for _, c := range uniq {
		if selfSigned(c) {
			continue // a trust anchor: nothing revokes it
		}
		var issuer *x509.Certificate
		for _, i := range uniq {
			if bytes.Equal(i.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(i) == nil {
				issuer = i
			}
		}
		if issuer == nil {
			return nil, nil, kho.Errorf(kho.EINTERNAL, "signing: the issuer of %q is not in the chain", c.Subject.CommonName)
		}
		if have[string(issuer.RawSubject)] {
			continue
		}
		der, err := s.crl(ctx, c, issuer)
		if err != nil {
			return nil, nil, err
		}
		have[string(issuer.RawSubject)] = true
		crlDER = append(crlDER, der)
	}
	return certDER, crlDER, nil
}

// selfSigned says whether c is a trust anchor's certificate: signed by its
// own key (whether or not it is marked as a CA, as some TSAs' are not).
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// crlTTL is how long a CRL is reused before it is read again: a revocation
// reaches new signatures' DSS within it.
const crlTTL = 30 * time.Second

// crl finds the current CRL of c's issuer: the deployment's own CAs' from
// Vault, anyone else's (a timestamp authority's) from c's distribution
// points.
func (s *Signer) crl(ctx context.Context, c, issuer *x509.Certificate) ([]byte, error) {
	key := string(issuer.RawSubject)
	s.mu.Lock()
	if s.crls == nil {
		s.crls = map[string]cachedCRL{}
	}
	cached, ok := s.crls[key]
	s.mu.Unlock()
	if ok && time.Since(cached.at) < crlTTL {
		return cached.der, nil
	}
	var candidates [][]byte
	for _, name := range []string{vault.PKICACRL, vault.PKIRootCRL} {
		if der, err := s.cfg.Keys.PKIFile(ctx, name); err == nil {
			candidates = append(candidates, der)
		} else if kho.ErrorCode(err) != kho.ENOTFOUND {
			return nil, err
		}
	}
	for _, u := range c.CRLDistributionPoints {
		if der, err := s.fetch(ctx, u); err == nil {
			candidates = append(candidates, der)
		}
	}
	for _, der := range candidates {
		l, err := x509.ParseRevocationList(der)
		if err == nil && bytes.Equal(l.RawIssuer, issuer.RawSubject) && l.CheckSignatureFrom(issuer) == nil {
			s.mu.Lock()
			s.crls[key] = cachedCRL{der: der, at: time.Now()}
			s.mu.Unlock()
			return der, nil
		}
	}
	return nil, kho.Errorf(kho.EUNAVAILABLE, "signing: no revocation list of %q could be had for long-term validation", issuer.Subject.CommonName)
}

// fetch GETs a small file (a CRL) over HTTP.
func (s *Signer) fetch(ctx context.Context, url string) ([]byte, error) {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("not an http URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 8<<20))
}

// readStructure finds what the update needs with pdfcpu.
func readStructure(pdf []byte) (*updateInput, error) {
	pdfcpuOnce.Do(func() { model.ConfigPath = "disable" })
	ctx, err := pdfapi.ReadContext(bytes.NewReader(pdf), pdfConfig())
	if err != nil {
		return nil, err
	}
	xt := ctx.XRefTable
	if xt.Root == nil || xt.Size == nil {
		return nil, errors.New("no catalog or size in the trailer")
	}
	if err := ctx.EnsurePageCount(); err != nil {
		return nil, err
	}
	in := &updateInput{original: pdf, size: *xt.Size, root: *xt.Root, info: xt.Info, id: xt.ID}
	if in.catalog, err = xt.Catalog(); err != nil {
		return nil, err
	}
	pd, ref, inh, err := xt.PageDict(1, false)
	if err != nil || ref == nil {
		return nil, fmt.Errorf("page 1: %v", err)
	}
	in.pageDict, in.page = pd, *ref
	box := inh.MediaBox
	if mb, ok := pd.Find("MediaBox"); ok {
		if r, err := xt.RectForArray(mustArray(xt, mb)); err == nil && r != nil {
			box = r
		}
	}
	if box != nil {
		in.mediaBox = [4]float64{box.LL.X, box.LL.Y, box.UR.X, box.UR.Y}
	} else {
		in.mediaBox = [4]float64{0, 0, 595, 842}
	}
	if a, ok := pd.Find("Annots"); ok {
		if arr, err := xt.DereferenceArray(a); err == nil {
			in.annots = arr
		}
	}
	if af, ok := in.catalog.Find("AcroForm"); ok {
		if r, isRef := af.(types.IndirectRef); isRef {
			in.acroForm = &r
		}
		d, err := xt.DereferenceDict(af)
		if err != nil {
			return nil, fmt.Errorf("acroform: %v", err)
		}
		in.acroDict = d
		if f, ok := d.Find("Fields"); ok {
			if arr, err := xt.DereferenceArray(f); err == nil {
				in.fields = arr
			}
		}
	}
	if d, ok := in.catalog.Find("DSS"); ok {
		// An earlier DSS is kept: its arrays, dereferenced, grow.
		if dd, err := xt.DereferenceDict(d); err == nil && dd != nil {
			in.dss = types.Dict{}
			for _, k := range []string{"Certs", "CRLs", "OCSPs"} {
				if o, ok := dd.Find(k); ok {
					if a, err := xt.DereferenceArray(o); err == nil {
						in.dss.Insert(k, a)
					}
				}
			}
		}
	}
	if in.prevXref, in.xrefStream, err = lastXref(pdf); err != nil {
		return nil, err
	}
	return in, nil
}

// pdfConfig is how kho reads PDFs from outside: relaxed about syntax, tight
// about resources, so that a small file cannot make a large allocation.
func pdfConfig() *model.Configuration {
	conf := model.NewDefaultConfiguration()
	conf.ValidationMode = model.ValidationRelaxed
	// Encoded streams are in the file, whose size is bounded already (a
	// scan's image may be most of it); what decoding makes of them is not.
	conf.Limits.MaxStreamBytes = 1 << 30
	conf.Limits.MaxDecodeBytes = 64 << 20
	conf.Limits.MaxImageBytes = 64 << 20
	conf.Limits.MaxObjectCount = 1_000_000
	conf.Limits.MaxObjectStreamCount = 100_000
	conf.Limits.MaxXRefEntries = 1_000_000
	return conf
}

func mustArray(xt *model.XRefTable, o types.Object) types.Array {
	a, _ := xt.DereferenceArray(o)
	return a
}

var pdfcpuOnce sync.Once

var _ kho.PDFSigner = (*Signer)(nil)

// SignPDF meets kho.PDFSigner: the agency signs; when an officer of it
// deposits (a digitized scan, say), the officer then adds a personal
// signature in a second incremental update, leaving the agency's intact.
func (s *Signer) SignPDF(ctx context.Context, issuer kho.AgencyCode, officer kho.StaffID, pdf []byte, resultCode string) ([]byte, error) {
	signed, certs, err := s.sign(ctx, pdf, Options{Agency: issuer, ResultCode: resultCode})
	if err != nil {
		return nil, err
	}
	if officer != "" {
		var more []*x509.Certificate
		if signed, more, err = s.sign(ctx, signed, Options{Agency: issuer, Officer: officer, Reason: "Cán bộ số hóa / Digitizing officer"}); err != nil {
			return nil, err
		}
		certs = append(certs, more...)
	}
	// One DSS (and document timestamp) after both signatures.
	return s.extend(ctx, signed, certs)
}
