package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"kho"
	"kho/api"
)

const testIssuer = "https://idp.test"

// signer is an identity provider for tests: one ES256 key.
type signer struct {
	priv jwk.Key
	set  jwk.Set
}

func newSigner(t testing.TB) *signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(k)
	if err != nil {
		t.Fatal(err)
	}
	_ = jwk.AssignKeyID(priv)
	_ = priv.Set(jwk.AlgorithmKey, jwa.ES256())
	pub, err := priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	return &signer{priv: priv, set: set}
}

// claims returns valid claims for a citizen; tests change them.
func claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": testIssuer, "sub": "001090000001", "aud": []string{"kho"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": "t-1", kho.ClaimKind: "citizen",
	}
}

func (s *signer) sign(t testing.TB, c map[string]any) string {
	t.Helper()
	return s.signWith(t, c, nil)
}

// signWith signs c with extra protected headers.
func (s *signer) signWith(t testing.TB, c map[string]any, headers map[string]any) string {
	t.Helper()
	b := jwt.NewBuilder()
	for k, v := range c {
		switch k {
		case "iat", "nbf", "exp":
			b = b.Claim(k, time.Unix(v.(int64), 0))
		default:
			b = b.Claim(k, v)
		}
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	for k, v := range headers {
		if err := hdr.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	out, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), s.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func newAuth(t testing.TB, s *signer) *api.Authenticator {
	t.Helper()
	a, err := api.NewAuthenticator(context.Background(), "kho", []api.IssuerConfig{{Issuer: testIssuer, KeySet: s.set, Kinds: kho.PrincipalKinds}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticate(t *testing.T) {
	s := newSigner(t)
	other := newSigner(t)
	a := newAuth(t, s)
	with := func(mod func(map[string]any)) map[string]any {
		c := claims()
		mod(c)
		return c
	}
	now := time.Now()
	tests := []struct {
		name  string
		token string
		want  kho.Principal
	}{
		{"ok/citizen", s.sign(t, claims()), kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001"}},
		{"ok/business rep", s.sign(t, with(func(c map[string]any) {
			c[kho.ClaimKind], c[kho.ClaimBusiness] = "business_rep", "0101234567"
		})), kho.Principal{Kind: kho.PrincipalBusinessRep, Person: "001090000001", Business: "0101234567"}},
		{"ok/agency", s.sign(t, with(func(c map[string]any) {
			c[kho.ClaimKind], c["sub"], c[kho.ClaimAgency] = "agency", "000.06.16.G09", "000.06.16.G09"
		})), kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.06.16.G09"}},
		{"ok/agency officer", s.sign(t, with(func(c map[string]any) {
			c[kho.ClaimKind], c["sub"], c[kho.ClaimAgency] = "agency_officer", "cb01", "000.06.16.G09"
		})), kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: "000.06.16.G09", Staff: "cb01"}},
		{"ok/security officer", s.sign(t, with(func(c map[string]any) { c[kho.ClaimKind], c["sub"] = "security_officer", "so01" })),
			kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}},

		{"fail/not a jwt", "abc.def", kho.Principal{}},
		{"fail/signed by another key", other.sign(t, claims()), kho.Principal{}},
		{"fail/unknown issuer", s.sign(t, with(func(c map[string]any) { c["iss"] = "https://evil.test" })), kho.Principal{}},
		{"fail/wrong audience", s.sign(t, with(func(c map[string]any) { c["aud"] = []string{"other"} })), kho.Principal{}},
		{"fail/expired", s.sign(t, with(func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		})), kho.Principal{}},
		{"fail/not yet valid", s.sign(t, with(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), kho.Principal{}},
		{"fail/no exp", s.sign(t, with(func(c map[string]any) { delete(c, "exp") })), kho.Principal{}},
		{"fail/no jti", s.sign(t, with(func(c map[string]any) { delete(c, "jti") })), kho.Principal{}},
		{"fail/lives too long", s.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(48 * time.Hour).Unix() })), kho.Principal{}},
		{"fail/no kind", s.sign(t, with(func(c map[string]any) { delete(c, kho.ClaimKind) })), kho.Principal{}},
		{"fail/unknown kind", s.sign(t, with(func(c map[string]any) { c[kho.ClaimKind] = "root" })), kho.Principal{}},
		{"fail/citizen with bad id", s.sign(t, with(func(c map[string]any) { c["sub"] = "12345" })), kho.Principal{}},
		{"fail/citizen claiming an agency", s.sign(t, with(func(c map[string]any) { c[kho.ClaimAgency] = "G09" })), kho.Principal{}},
		{"fail/citizen claiming a business", s.sign(t, with(func(c map[string]any) { c[kho.ClaimBusiness] = "0101234567" })), kho.Principal{}},
		{"fail/agency sub differs from agency", s.sign(t, with(func(c map[string]any) {
			c[kho.ClaimKind], c["sub"], c[kho.ClaimAgency] = "agency", "G01", "G09"
		})), kho.Principal{}},
		{"fail/alg none", unsigned(t, claims()), kho.Principal{}},
		{"fail/HS256 with the public key as secret", hsWithPublicKey(t, s, claims()), kho.Principal{}},
		{"fail/tampered payload", tamper(s.sign(t, claims())), kho.Principal{}},
		{"fail/unknown critical header", s.signWith(t, claims(), map[string]any{"crit": []string{"kho-x"}, "kho-x": true}), kho.Principal{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(context.Background(), tt.token)
			if strings.HasPrefix(tt.name, "fail/") {
				if err == nil {
					t.Fatalf("accepted: %+v", p)
				}
				if kho.ErrorCode(err) != kho.EUNAUTHORIZED {
					t.Fatalf("code %s, want unauthorized", kho.ErrorCode(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != tt.want.Kind || p.Person != tt.want.Person || p.Business != tt.want.Business ||
				p.Agency != tt.want.Agency || p.Staff != tt.want.Staff || p.Issuer != testIssuer || p.TokenID != "t-1" {
				t.Fatalf("got %+v, want %+v", p, tt.want)
			}
		})
	}
}

func unsigned(t testing.TB, c map[string]any) string {
	t.Helper()
	tok := newSigner(t).sign(t, c)
	parts := strings.Split(tok, ".")
	// {"alg":"none"} header, original payload, empty signature.
	return "eyJhbGciOiJub25lIn0." + parts[1] + "."
}

func hsWithPublicKey(t testing.TB, s *signer, c map[string]any) string {
	t.Helper()
	pub, _ := s.set.Key(0)
	raw, err := jwk.PublicRawKeyOf(pub)
	if err != nil {
		t.Fatal(err)
	}
	ec := raw.(*ecdsa.PublicKey)
	secret, err := ec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tok := newSigner(t).sign(t, c)
	payload := strings.Split(tok, ".")[1]
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, mustKid(pub))
	signed, err := jws.Sign([]byte(decodeSeg(t, payload)), jws.WithKey(jwa.HS256(), secret, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func mustKid(k jwk.Key) string {
	kid, _ := k.KeyID()
	return kid
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	p[len(p)/2] ^= 0x01
	parts[1] = string(p)
	return strings.Join(parts, ".")
}

func TestAuthenticatorConfig(t *testing.T) {
	s := newSigner(t)
	all := kho.PrincipalKinds
	tests := []struct {
		name     string
		audience string
		issuers  []api.IssuerConfig
	}{
		{"fail/no audience", "", []api.IssuerConfig{{Issuer: testIssuer, KeySet: s.set, Kinds: all}}},
		{"fail/no issuers", "kho", nil},
		{"fail/both key set and url", "kho", []api.IssuerConfig{{Issuer: testIssuer, KeySet: s.set, JWKSURL: "https://x/jwks", Kinds: all}}},
		{"fail/neither", "kho", []api.IssuerConfig{{Issuer: testIssuer, Kinds: all}}},
		{"fail/duplicate", "kho", []api.IssuerConfig{{Issuer: testIssuer, KeySet: s.set, Kinds: all}, {Issuer: testIssuer, KeySet: s.set, Kinds: all}}},
		{"fail/bad jwks url", "kho", []api.IssuerConfig{{Issuer: testIssuer, JWKSURL: "file:///etc/passwd", Kinds: all}}},
		{"fail/plain http jwks outside dev", "kho", []api.IssuerConfig{{Issuer: testIssuer, JWKSURL: "http://idp.test/jwks", Kinds: all}}},
		{"fail/unreachable jwks", "kho", []api.IssuerConfig{{Issuer: testIssuer, JWKSURL: "http://127.0.0.1:1/jwks", FetchTimeout: time.Second, Kinds: all, AllowHTTP: true}}},
		{"fail/no kinds", "kho", []api.IssuerConfig{{Issuer: testIssuer, KeySet: s.set}}},
		{"fail/unknown kind", "kho", []api.IssuerConfig{{Issuer: testIssuer, KeySet: s.set, Kinds: []kho.PrincipalKind{"root"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := api.NewAuthenticator(context.Background(), tt.audience, tt.issuers); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// Keys published at a JWKS URL are fetched and used.
func TestAuthenticateWithRemoteJWKS(t *testing.T) {
	s := newSigner(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		buf, _ := jsonOf(s.set)
		_, _ = w.Write(buf)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := api.NewAuthenticator(ctx, "kho", []api.IssuerConfig{{Issuer: testIssuer, JWKSURL: srv.URL + "/jwks.json", Kinds: kho.PrincipalKinds, AllowHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, s.sign(t, claims())); err != nil {
		t.Fatalf("token from remote JWKS: %v", err)
	}
	if _, err := a.Authenticate(ctx, newSigner(t).sign(t, claims())); err == nil {
		t.Fatal("token from a key not in the remote JWKS accepted")
	}
}

// Each identity provider asserts only the kinds it is trusted for: a token
// from the citizen portal's provider claiming an operator or a security
// officer, or an agency, is refused even though its signature is good.
func TestIssuerAssertsOnlyItsKinds(t *testing.T) {
	portal, staff := newSigner(t), newSigner(t)
	a, err := api.NewAuthenticator(context.Background(), "kho", []api.IssuerConfig{
		{Issuer: testIssuer, KeySet: portal.set, Kinds: []kho.PrincipalKind{kho.PrincipalCitizen, kho.PrincipalBusinessRep}},
		{Issuer: "https://staff.test", KeySet: staff.set, Kinds: []kho.PrincipalKind{kho.PrincipalSecurityOfficer, kho.PrincipalOperator}},
	})
	if err != nil {
		t.Fatal(err)
	}
	as := func(s *signer, iss, kind, sub string, extra ...string) string {
		c := claims()
		c["iss"], c[kho.ClaimKind], c["sub"] = iss, kind, sub
		if len(extra) == 2 {
			c[extra[0]] = extra[1]
		}
		return s.sign(t, c)
	}
	tests := []struct {
		name  string
		token string
	}{
		{"ok/portal asserts a citizen", as(portal, testIssuer, "citizen", "001090000001")},
		{"ok/staff directory asserts an operator", as(staff, "https://staff.test", "operator", "op01")},
		{"fail/portal asserts an operator", as(portal, testIssuer, "operator", "op01")},
		{"fail/portal asserts a security officer", as(portal, testIssuer, "security_officer", "so01")},
		{"fail/portal asserts an agency", as(portal, testIssuer, "agency", "000.06.16.G09", kho.ClaimAgency, "000.06.16.G09")},
		{"fail/staff directory asserts a citizen", as(staff, "https://staff.test", "citizen", "001090000001")},
		{"fail/staff key under the portal's name", as(staff, testIssuer, "citizen", "001090000001")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(context.Background(), tt.token)
			if ok := strings.HasPrefix(tt.name, "ok/"); ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func FuzzAuthenticate(f *testing.F) {
	s := newSigner(f)
	a := newAuth(f, s)
	good := s.sign(f, claims())
	for _, seed := range []string{good, tamper(good), "", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("A", 1000)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := a.Authenticate(context.Background(), tok)
		if err != nil {
			if kho.ErrorCode(err) != kho.EUNAUTHORIZED {
				t.Fatalf("code %s", kho.ErrorCode(err))
			}
			return
		}
		// Only the one good token (or one differing in base64 padding bits
		// that decode the same) may pass, and it must name a valid principal.
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted token names an invalid principal: %v", err)
		}
	})
}
