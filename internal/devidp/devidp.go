// Package devidp is the small identity provider of the dev stack: one ES256
// key kept in the stack's state folder, from which `kho dev token` mints
// tokens for the demo users and whose public half khod trusts when, and only
// when, it runs with --mode=dev. The identity issue replaces it with real
// issuers; the tokens it makes have the same claims, so nothing downstream
// changes.
package devidp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"kho"
)

// Issuer is the iss of every dev token. It is not a URL on purpose: nothing
// outside this machine should ever be configured to trust it.
const Issuer = "urn:kho:dev-idp"

// IdP holds the signing key.
type IdP struct {
	key jwk.Key
}

// LoadOrCreate reads the key file, creating it (mode 0600) when missing.
func LoadOrCreate(path string) (*IdP, error) {
	idp, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return idp, err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devidp: generate key: %w", err)
	}
	key, err := jwk.Import(priv)
	if err != nil {
		return nil, fmt.Errorf("devidp: import key: %w", err)
	}
	if err := setKeyMeta(key); err != nil {
		return nil, err
	}
	b, err := json.Marshal(key)
	if err != nil {
		return nil, fmt.Errorf("devidp: encode key: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("devidp: write key: %w", err)
	}
	return &IdP{key: key}, nil
}

// Load reads an existing key file.
func Load(path string) (*IdP, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devidp: read key file: %w", err)
	}
	key, err := jwk.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("devidp: key file %s is not a JWK: %w", path, err)
	}
	if _, ok := key.(jwk.ECDSAPrivateKey); !ok {
		return nil, fmt.Errorf("devidp: key file %s does not hold an EC private key", path)
	}
	if err := setKeyMeta(key); err != nil {
		return nil, err
	}
	return &IdP{key: key}, nil
}

func setKeyMeta(key jwk.Key) error {
	if err := jwk.AssignKeyID(key); err != nil {
		return fmt.Errorf("devidp: key id: %w", err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		return fmt.Errorf("devidp: key alg: %w", err)
	}
	return key.Set(jwk.KeyUsageKey, "sig")
}

// PublicSet returns the public key as a JWK set, for khod to verify with and
// to publish.
func (d *IdP) PublicSet() (jwk.Set, error) {
	pub, err := d.key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("devidp: public key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("devidp: key set: %w", err)
	}
	return set, nil
}

// Mint signs a token for p, valid for ttl, for the given audience.
func (d *IdP) Mint(p kho.Principal, audience string, ttl time.Duration) (string, error) {
	return d.MintWith(p, audience, ttl, nil)
}

// MintWith is Mint with extra claims (an ID token's nonce).
func (d *IdP) MintWith(p kho.Principal, audience string, ttl time.Duration, extra map[string]any) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	now := time.Now()
	b := jwt.NewBuilder().
		Issuer(Issuer).
		Audience([]string{audience}).
		IssuedAt(now).
		NotBefore(now).
		Expiration(now.Add(ttl)).
		JwtID(uuid.Must(uuid.NewV7()).String()).
		Claim(kho.ClaimKind, string(p.Kind))
	switch p.Kind {
	case kho.PrincipalCitizen:
		b = b.Subject(string(p.Person))
	case kho.PrincipalBusinessRep:
		b = b.Subject(string(p.Person)).Claim(kho.ClaimBusiness, string(p.Business))
	case kho.PrincipalAgency:
		b = b.Subject(string(p.Agency)).Claim(kho.ClaimAgency, string(p.Agency))
	case kho.PrincipalAgencyOfficer:
		b = b.Subject(string(p.Staff)).Claim(kho.ClaimAgency, string(p.Agency))
	default:
		b = b.Subject(string(p.Staff))
	}
	for k, v := range extra {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("devidp: build token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), d.key))
	if err != nil {
		return "", fmt.Errorf("devidp: sign token: %w", err)
	}
	return string(signed), nil
}

// ParseAs reads the --as argument of `kho dev token`:
//
//	citizen:<personal id>
//	business:<enterprise code>:<representative's personal id>
//	agency:<agency code>
//	officer:<agency code>:<staff id>
//	security:<staff id>
//	operator:<staff id>
func ParseAs(s string) (kho.Principal, error) {
	kind, rest, _ := strings.Cut(s, ":")
	parts := strings.Split(rest, ":")
	want := func(n int) error {
		if len(parts) != n || rest == "" {
			return kho.Errorf(kho.EINVALID, "--as %s: expected %d colon-separated value(s) after %q", kind, n, kind+":")
		}
		return nil
	}
	var p kho.Principal
	var err error
	switch kind {
	case "citizen":
		if err = want(1); err == nil {
			p = kho.Principal{Kind: kho.PrincipalCitizen, Person: kho.SubjectID(parts[0])}
		}
	case "business":
		if err = want(2); err == nil {
			p = kho.Principal{Kind: kho.PrincipalBusinessRep, Business: kho.SubjectID(parts[0]), Person: kho.SubjectID(parts[1])}
		}
	case "agency":
		if err = want(1); err == nil {
			p = kho.Principal{Kind: kho.PrincipalAgency, Agency: kho.AgencyCode(parts[0])}
		}
	case "officer":
		if err = want(2); err == nil {
			p = kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: kho.AgencyCode(parts[0]), Staff: kho.StaffID(parts[1])}
		}
	case "security":
		if err = want(1); err == nil {
			p = kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: kho.StaffID(parts[0])}
		}
	case "operator":
		if err = want(1); err == nil {
			p = kho.Principal{Kind: kho.PrincipalOperator, Staff: kho.StaffID(parts[0])}
		}
	default:
		return p, kho.Errorf(kho.EINVALID, "--as must start with citizen:, business:, agency:, officer:, security: or operator:")
	}
	if err != nil {
		return p, err
	}
	return p, p.Validate()
}

// AgencyKey loads the private key the dev agency system of code signs its
// client assertions with, from dir, making it on first use (ES256, kid
// "dev-<code>"). Its public part is what kho agency register takes.
func AgencyKey(dir, code string) (jwk.Key, error) {
	path := filepath.Join(dir, "agency-keys", code+".jwk.json")
	if b, err := os.ReadFile(path); err == nil {
		return jwk.ParseKey(b)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	k, err := jwk.Import(priv)
	if err != nil {
		return nil, err
	}
	for name, v := range map[string]any{jwk.KeyIDKey: "dev-" + code, jwk.AlgorithmKey: jwa.ES256(), jwk.KeyUsageKey: "sig"} {
		if err := k.Set(name, v); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return k, os.WriteFile(path, b, 0o600)
}
