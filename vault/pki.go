package vault

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"kho"
)

// PKIRole is the role on MountPKIInt that issues agency signing
// certificates.
const PKIRole = "agency-signing"

// PKIOptions names the deployment's CA.
type PKIOptions struct {
	Organization string // e.g. "kho (dev)"
	Country      string // "VN"
	// RootPEM, IntermediatePEM and IntermediateKeyPEM import an existing
	// chain instead of generating one (all three, or none).
	RootPEM, IntermediatePEM, IntermediateKeyPEM string
	// PublicURL is khod's public base URL (https://kho.example.vn): the
	// certificates the CAs issue point there for their issuer's
	// certificate (/pki/root.crt, /pki/ca.crt) and revocation list
	// (/pki/root.crl, /pki/ca.crl), which khod serves, so that a validator
	// finds the chain and revocation without asking anyone else.
	PublicURL string
}

// The files khod serves under /pki/ for validators.
const (
	PKIRootCert = "root.crt"
	PKIRootCRL  = "root.crl"
	PKICACert   = "ca.crt"
	PKICACRL    = "ca.crl"
)

// BootstrapPKI creates, with an operator's client, the deployment's root CA
// on MountPKI and the "agency signing" intermediate on MountPKIInt (or
// imports the operator's chain), and the role that issues document-signing
// certificates. It is idempotent: an existing CA is kept.
func BootstrapPKI(ctx context.Context, operator *vaultapi.Client, o PKIOptions) error {
	if o.Organization == "" {
		o.Organization = "kho"
	}
	if o.Country == "" {
		o.Country = "VN"
	}
	l := operator.Logical()
	if err := writePKIURLs(ctx, l, o.PublicURL); err != nil {
		return err
	}
	if existing, err := l.ReadWithContext(ctx, MountPKIInt+"/cert/ca"); err == nil && existing != nil {
		if c, _ := existing.Data["certificate"].(string); strings.TrimSpace(c) != "" {
			return writePKIRole(ctx, l)
		}
	}
	if o.RootPEM != "" || o.IntermediatePEM != "" || o.IntermediateKeyPEM != "" {
		if o.RootPEM == "" || o.IntermediatePEM == "" || o.IntermediateKeyPEM == "" {
			return kho.Errorf(kho.EINVALID, "vault pki: importing a chain needs the root, the intermediate and its key")
		}
		if err := importIssuer(ctx, l, MountPKI, o.RootPEM, o.RootPEM); err != nil {
			return err
		}
		if err := importIssuer(ctx, l, MountPKIInt, o.IntermediateKeyPEM+"\n"+o.IntermediatePEM+"\n"+o.RootPEM, o.IntermediatePEM); err != nil {
			return err
		}
		return writePKIRole(ctx, l)
	}
	if _, err := l.WriteWithContext(ctx, MountPKI+"/root/generate/internal", map[string]any{
		"common_name": o.Organization + " Root CA", "organization": o.Organization, "country": o.Country,
		"key_type": "ec", "key_bits": 384, "ttl": "87600h", "issuer_name": "kho-root",
	}); err != nil {
		return mapErr("generate root CA", err)
	}
	csr, err := l.WriteWithContext(ctx, MountPKIInt+"/intermediate/generate/internal", map[string]any{
		"common_name": o.Organization + " Agency Signing CA", "organization": o.Organization, "country": o.Country,
		"key_type": "ec", "key_bits": 384,
	})
	if err != nil {
		return mapErr("generate intermediate", err)
	}
	signed, err := l.WriteWithContext(ctx, MountPKI+"/root/sign-intermediate", map[string]any{
		"csr": csr.Data["csr"], "format": "pem_bundle", "ttl": "43800h", "use_csr_values": true,
		"organization": o.Organization, "country": o.Country,
	})
	if err != nil {
		return mapErr("sign intermediate", err)
	}
	if _, err := l.WriteWithContext(ctx, MountPKIInt+"/intermediate/set-signed", map[string]any{"certificate": signed.Data["certificate"]}); err != nil {
		return mapErr("install intermediate", err)
	}
	return writePKIRole(ctx, l)
}

// importIssuer imports a PEM bundle into a PKI mount and makes the issuer
// whose certificate is defaultPEM the mount's default. Vault names a default
// by itself only when an imported issuer has its key, never for a root
// imported without one.
func importIssuer(ctx context.Context, l *vaultapi.Logical, mount, bundle, defaultPEM string) error {
	want, err := ParsePEMCertificates(defaultPEM)
	if err != nil {
		return kho.WrapError(kho.EINVALID, "vault pki: the certificate to import is not PEM", err)
	}
	resp, err := l.WriteWithContext(ctx, mount+"/config/ca", map[string]any{"pem_bundle": bundle})
	if err != nil {
		return mapErr("import "+mount, err)
	}
	ids, _ := resp.Data["imported_issuers"].([]any)
	if len(ids) == 0 {
		// Already there from an earlier run: look it up among all issuers.
		list, err := l.ListWithContext(ctx, mount+"/issuers")
		if err != nil || list == nil {
			return mapErr("list issuers of "+mount, err)
		}
		ids, _ = list.Data["keys"].([]any)
	}
	for _, id := range ids {
		is, _ := id.(string)
		issuer, err := l.ReadWithContext(ctx, mount+"/issuer/"+is)
		if err != nil || issuer == nil {
			continue
		}
		pemCert, _ := issuer.Data["certificate"].(string)
		if got, err := ParsePEMCertificates(pemCert); err == nil && got[0].Equal(want[0]) {
			if _, err := l.WriteWithContext(ctx, mount+"/config/issuers", map[string]any{"default": is}); err != nil {
				return mapErr("set the default issuer of "+mount, err)
			}
			return nil
		}
	}
	return kho.Errorf(kho.EINVALID, "vault pki: the imported certificate is not among %s's issuers", mount)
}

// writePKIURLs has each CA write where its certificate and CRL are into the
// certificates it issues (authority information access and CRL
// distribution points), and keeps its CRL rebuilt before it expires.
func writePKIURLs(ctx context.Context, l *vaultapi.Logical, public string) error {
	for _, m := range []struct{ mount, cert, crl string }{{MountPKI, PKIRootCert, PKIRootCRL}, {MountPKIInt, PKICACert, PKICACRL}} {
		if _, err := l.WriteWithContext(ctx, m.mount+"/config/crl", map[string]any{"expiry": "72h", "auto_rebuild": true, "auto_rebuild_grace_period": "24h"}); err != nil {
			return mapErr("configure the CRL of "+m.mount, err)
		}
		if public == "" {
			continue
		}
		base := strings.TrimSuffix(public, "/") + "/pki/"
		if _, err := l.WriteWithContext(ctx, m.mount+"/config/urls", map[string]any{
			"issuing_certificates": []string{base + m.cert}, "crl_distribution_points": []string{base + m.crl},
		}); err != nil {
			return mapErr("configure the URLs of "+m.mount, err)
		}
	}
	return nil
}

// PKIFile returns, DER encoded, one of the files khod serves under /pki/:
// the root or intermediate CA's certificate or current CRL.
func (t *Transit) PKIFile(ctx context.Context, name string) ([]byte, error) {
	mount, field := MountPKI, "certificate"
	switch name {
	case PKIRootCert:
	case PKIRootCRL:
		field = "crl"
	case PKICACert:
		mount = MountPKIInt
	case PKICACRL:
		mount, field = MountPKIInt, "crl"
	default:
		return nil, kho.Errorf(kho.ENOTFOUND, "no PKI file %q", name)
	}
	path := mount + "/issuer/default/json"
	if field == "crl" {
		path = mount + "/issuer/default/crl"
	}
	s, err := t.logical.ReadWithContext(ctx, path)
	var re *vaultapi.ResponseError
	if errors.As(err, &re) && strings.Contains(strings.Join(re.Errors, " "), "unable to find CRL") {
		// A CA whose key is offline (an imported root) publishes its CRL
		// elsewhere.
		return nil, kho.Errorf(kho.ENOTFOUND, "vault pki: %s is kept by the operator, not in Vault", name)
	}
	if err != nil {
		return nil, mapErr("read "+name, err)
	}
	if s == nil {
		return nil, kho.Errorf(kho.EUNAVAILABLE, "vault pki: no %s (run kho init or kho dev up)", name)
	}
	p, _ := s.Data[field].(string)
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return nil, kho.Errorf(kho.EUNAVAILABLE, "vault pki: %s is not PEM", name)
	}
	return b.Bytes, nil
}

// writePKIRole shapes agency certificates for document signing: key usage
// digitalSignature and contentCommitment (non-repudiation), extended key
// usage emailProtection (what NSS, and so Poppler, checks for signers), no
// server or client authentication.
func writePKIRole(ctx context.Context, l *vaultapi.Logical) error {
	_, err := l.WriteWithContext(ctx, MountPKIInt+"/roles/"+PKIRole, map[string]any{
		"allow_any_name": true, "enforce_hostnames": false, "allow_subdomains": false, "allow_ip_sans": false,
		"server_flag": false, "client_flag": false, "code_signing_flag": false, "email_protection_flag": true,
		"key_usage": []string{"DigitalSignature", "ContentCommitment"}, "key_type": "any",
		"use_csr_common_name": true, "use_csr_sans": false, "require_cn": true,
		// A common name is an agency's or officer's name, not a host name
		// or an e-mail address.
		"cn_validations": []string{"disabled"},
		"max_ttl":        "17520h", "ttl": "8760h", "no_store": false, "generate_lease": false,
		"organization": "", "ou": "",
	})
	if err != nil {
		return mapErr("write pki role", err)
	}
	return nil
}

// Certificate is an issued agency certificate with its chain up to the
// deployment root.
type Certificate struct {
	Leaf  *x509.Certificate
	Chain []*x509.Certificate // intermediate(s), then the root
	PEM   string              // leaf, then chain
}

// ParsePEMCertificates reads every certificate in a PEM text, in order.
func ParsePEMCertificates(s string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return out, nil
}

// SignCSR has the agency-signing intermediate issue a certificate for a CSR.
func (t *Transit) SignCSR(ctx context.Context, csrPEM string, ttl time.Duration) (*Certificate, error) {
	s, err := t.logical.WriteWithContext(ctx, MountPKIInt+"/sign/"+PKIRole, map[string]any{
		"csr": csrPEM, "ttl": fmt.Sprintf("%ds", int(ttl.Seconds())), "format": "pem",
	})
	if err != nil {
		return nil, mapErr("sign agency certificate", err)
	}
	leafPEM, _ := s.Data["certificate"].(string)
	leaf, err := ParsePEMCertificates(leafPEM)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "vault pki: issued certificate", err)
	}
	var chainPEM []string
	if raw, ok := s.Data["ca_chain"].([]any); ok {
		for _, c := range raw {
			if str, ok := c.(string); ok {
				chainPEM = append(chainPEM, str)
			}
		}
	}
	root, err := t.RootCertificate(ctx)
	if err != nil {
		return nil, err
	}
	chain, err := ParsePEMCertificates(strings.Join(chainPEM, "\n"))
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "vault pki: chain", err)
	}
	if !chain[len(chain)-1].Equal(root) {
		chain = append(chain, root)
	}
	var all strings.Builder
	all.WriteString(strings.TrimSpace(leafPEM) + "\n")
	for _, c := range chain {
		_ = pem.Encode(&all, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return &Certificate{Leaf: leaf[0], Chain: chain, PEM: all.String()}, nil
}

// RootCertificate returns the deployment's root CA certificate.
func (t *Transit) RootCertificate(ctx context.Context) (*x509.Certificate, error) {
	// issuer/default/json serves the root whether or not Vault holds its key
	// (an operator may import a root whose key stays offline); the legacy
	// cert/ca does not.
	s, err := t.logical.ReadWithContext(ctx, MountPKI+"/issuer/default/json")
	if err != nil {
		return nil, mapErr("read root CA", err)
	}
	if s == nil {
		return nil, kho.Errorf(kho.EUNAVAILABLE, "vault pki: no root CA (run kho init or kho dev up)")
	}
	p, _ := s.Data["certificate"].(string)
	certs, err := ParsePEMCertificates(p)
	if err != nil {
		return nil, kho.Errorf(kho.EUNAVAILABLE, "vault pki: no root CA (run kho init or kho dev up)")
	}
	return certs[0], nil
}

// Signer returns a crypto.Signer for the latest version of the named ECDSA
// signing key, with ctx for its Vault calls, and that version.
func (t *Transit) Signer(ctx context.Context, name string) (crypto.Signer, int, error) {
	v, pub, err := t.signingKeyInfo(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	return &transitSigner{ctx: ctx, t: t, name: name, version: v, pub: pub}, v, nil
}
