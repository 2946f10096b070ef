package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"kho"
	"kho/client"
	"kho/internal/testenv"
	"kho/oauth"
)

// agencyKey makes an agency system's signing key pair: the private key,
// and a JWKS of its public part for kho agency register.
func agencyKey(t *testing.T, kid string) (jwk.Key, jwk.Set) {
	t.Helper()
	return agencySystemKey(t, kid, "sig", jwa.ES256())
}

// agencySystemKey makes a P-256 key pair of an agency's system for a use
// ("sig", or "enc" to receive deliveries) and an algorithm.
func agencySystemKey(t *testing.T, kid, use string, alg jwa.KeyAlgorithm) (jwk.Key, jwk.Set) {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	_ = k.Set(jwk.AlgorithmKey, alg)
	_ = k.Set(jwk.KeyUsageKey, use)
	pub, _ := k.PublicKey()
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	return k, set
}

// assertion signs a client assertion with key, claims changed by mod.
func assertion(t *testing.T, key jwk.Key, agency string, mod func(map[string]any)) string {
	t.Helper()
	c := map[string]any{"iss": agency, "sub": agency, "aud": tokenIssuer + "/oauth/token", "iat": time.Now().Unix(),
		"exp": time.Now().Add(2 * time.Minute).Unix(), "jti": uuid.NewString()}
	if mod != nil {
		mod(c)
	}
	b := jwt.New()
	for k, v := range c {
		if v != nil {
			_ = b.Set(k, v)
		}
	}
	s, err := jwt.Sign(b, jwt.WithKey(jwa.ES256(), key))
	if err != nil {
		t.Fatal(err)
	}
	return string(s)
}

func tokenRequest(t *testing.T, d *docServer, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, b := request(t, "POST", d.url+"/oauth/token", "", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()), nil)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("token endpoint answered %d, not JSON: %s", resp.StatusCode, b)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token answers must not be cached: %q", resp.Header.Get("Cache-Control"))
	}
	return resp.StatusCode, out
}

func grant(a string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {oauth.AssertionType}, "client_assertion": {a}}
}

// An agency's system authenticates with its private key: a client
// assertion, once, for this endpoint, fresh, signed by a registered and
// current key of that agency. Everything else is refused with
// invalid_client; the token it gets is an agency's, bounded by its scope.
func TestTokenEndpointPrivateKeyJWT(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	police := "000.00.15.H29"
	key, set := agencyKey(t, "police-2026-01")
	if _, err := oauth.Register(ctx, d.docs.DB, kho.AgencyCode(police), set); err != nil {
		t.Fatal(err)
	}
	other, otherSet := agencyKey(t, "justice-2026-01")
	if _, err := oauth.Register(ctx, d.docs.DB, "000.06.16.G09", otherSet); err != nil {
		t.Fatal(err)
	}
	stranger, _ := agencyKey(t, "police-2026-01") // same kid, never registered

	ok := assertion(t, key, police, nil)
	status, body := tokenRequest(t, d, grant(ok))
	if status != 200 || body["token_type"] != "Bearer" || body["access_token"] == "" || body["expires_in"].(float64) != 300 {
		t.Fatalf("token: %d %v", status, body)
	}
	at := body["access_token"].(string)
	resp, me := request(t, "GET", d.url+"/v1/me", at, "", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(me), `"agency":"`+police+`"`) || !strings.Contains(string(me), `"kind":"agency"`) {
		t.Fatalf("me with the access token: %d %s", resp.StatusCode, me)
	}

	refused := map[string]url.Values{
		"replayed assertion":   grant(ok),
		"wrong aud":            grant(assertion(t, key, police, func(c map[string]any) { c["aud"] = "https://elsewhere.example/oauth/token" })),
		"expired":              grant(assertion(t, key, police, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })),
		"lives too long":       grant(assertion(t, key, police, func(c map[string]any) { c["exp"] = time.Now().Add(time.Hour).Unix() })),
		"no jti":               grant(assertion(t, key, police, func(c map[string]any) { c["jti"] = nil })),
		"unregistered key":     grant(assertion(t, stranger, police, nil)),
		"another agency's key": grant(assertion(t, other, police, nil)),
		"sub differs from iss": grant(assertion(t, key, police, func(c map[string]any) { c["sub"] = "000.06.16.G09" })),
		"unknown agency":       grant(assertion(t, key, "000.99.99.Z99", nil)),
		"not a JWT":            grant("not.a.jwt"),
		"client_id of someone else": func() url.Values {
			v := grant(assertion(t, key, police, nil))
			v.Set("client_id", "000.06.16.G09")
			return v
		}(),
		"no assertion": {"grant_type": {"client_credentials"}},
		"wrong assertion type": func() url.Values {
			v := grant(assertion(t, key, police, nil))
			v.Set("client_assertion_type", "bearer")
			return v
		}(),
		"unsigned assertion (alg none)": grant(func() string {
			parts := strings.Split(assertion(t, key, police, nil), ".")
			return "eyJhbGciOiJub25lIn0." + parts[1] + "."
		}()),
	}
	for name, form := range refused {
		t.Run("fail/"+name, func(t *testing.T) {
			status, body := tokenRequest(t, d, form)
			if status != 401 || body["error"] != "invalid_client" {
				t.Fatalf("%d %v", status, body)
			}
		})
	}
	for name, tc := range map[string]struct {
		form   url.Values
		status int
		code   string
	}{
		"fail/password grant":  {url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
		"fail/unknown scope":   {func() url.Values { v := grant(assertion(t, key, police, nil)); v.Set("scope", "audit:read"); return v }(), 400, "invalid_scope"},
		"fail/parameter twice": {url.Values{"grant_type": {"client_credentials", "client_credentials"}}, 400, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			status, body := tokenRequest(t, d, tc.form)
			if status != tc.status || body["error"] != tc.code {
				t.Fatalf("%d %v", status, body)
			}
		})
	}
	// A JSON body is not a token request.
	if resp, b := request(t, "POST", d.url+"/oauth/token", "", "application/json", strings.NewReader(`{"grant_type":"client_credentials"}`), nil); resp.StatusCode != 400 {
		t.Fatalf("JSON token request: %d %s", resp.StatusCode, b)
	}

	// The scope bounds the token: read-only cannot deposit.
	form := grant(assertion(t, key, police, nil))
	form.Set("scope", "documents:read")
	_, body = tokenRequest(t, d, form)
	readOnly := body["access_token"].(string)
	resp, b := request(t, "POST", d.url+"/v1/availability", readOnly, "application/json", strings.NewReader(`{"subject_id":"001090000001","procedure":"CHC"}`), nil)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "documents:fetch") {
		t.Fatalf("availability with a read-only token: %d %s", resp.StatusCode, b)
	}
	// An idempotent answer is never served to a token without the
	// request's scope: it is decided again, and refused.
	form = grant(assertion(t, key, police, nil))
	form.Set("scope", "consent:request")
	_, body = tokenRequest(t, d, form)
	asker := body["access_token"].(string)
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	ask := `{"subject_id":"001090000001","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"` + until + `","mode":"once","data_life_days":30}`
	if resp, b := request(t, "POST", d.url+"/v1/consent-requests", asker, "application/json", strings.NewReader(ask), map[string]string{"Idempotency-Key": "k-scope"}); resp.StatusCode != 201 {
		t.Fatalf("consent request: %d %s", resp.StatusCode, b)
	}
	if resp, b := request(t, "POST", d.url+"/v1/consent-requests", readOnly, "application/json", strings.NewReader(ask), map[string]string{"Idempotency-Key": "k-scope"}); resp.StatusCode != 403 || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("replay to a read-only token: %d %s", resp.StatusCode, b)
	}
	// A retired key signs nothing from then on.
	if err := oauth.Retire(ctx, d.docs.DB, kho.AgencyCode(police), "police-2026-01"); err != nil {
		t.Fatal(err)
	}
	if status, body := tokenRequest(t, d, grant(assertion(t, key, police, nil))); status != 401 {
		t.Fatalf("retired key: %d %v", status, body)
	}
	// The Go client does the same dance with a new key.
	key2, set2 := agencyKey(t, "police-2026-02")
	if _, err := oauth.Register(ctx, d.docs.DB, kho.AgencyCode(police), set2); err != nil {
		t.Fatal(err)
	}
	ts := &client.TokenSource{Agency: police, TokenURL: d.url + "/oauth/token", Key: key2}
	if _, err := ts.Token(context.Background()); err == nil {
		t.Fatal("an assertion for another address than kho's public one was accepted")
	}
	ts = &client.TokenSource{Agency: police, TokenURL: d.url + "/oauth/token", Audience: tokenIssuer + "/oauth/token", Key: key2}
	tok, err := ts.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ts.Token(context.Background()); again != tok {
		t.Fatal("the client did not reuse its valid token")
	}
}

// Registration takes public keys only, each with a kid, a use and an
// algorithm kho accepts; a kid is registered once.
func TestRegisterAgencyKeys(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	priv, _ := agencyKey(t, "k1")
	privSet := jwk.NewSet()
	_ = privSet.AddKey(priv)
	_, pub := agencyKey(t, "k2")
	noAlg, _ := agencyKey(t, "k3")
	pk, _ := noAlg.PublicKey()
	_ = pk.Remove(jwk.AlgorithmKey)
	noAlgSet := jwk.NewSet()
	_ = noAlgSet.AddKey(pk)
	// Keys that claim what they cannot do: an RSA key to receive ECDH-ES
	// deliveries, a P-384 key for ES256.
	mismatched := func(kid string, priv any, use string, alg jwa.KeyAlgorithm) jwk.Set {
		k, err := jwk.Import(priv)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		_ = k.Set(jwk.KeyUsageKey, use)
		_ = k.Set(jwk.AlgorithmKey, alg)
		p, _ := k.PublicKey()
		set := jwk.NewSet()
		_ = set.AddKey(p)
		return set
	}
	lowOrder, err := jwk.Parse([]byte(`{"keys":[{"kty":"OKP","crv":"X25519","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kid":"k6","use":"enc","alg":"ECDH-ES+A256KW"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name   string
		agency string
		set    jwk.Set
		code   string
	}{
		{"fail/private key", "000.00.15.H29", privSet, kho.EINVALID},
		{"fail/no alg", "000.00.15.H29", noAlgSet, kho.EINVALID},
		{"fail/unknown agency", "000.99.99.Z99", pub, kho.ENOTFOUND},
		{"fail/empty set", "000.00.15.H29", jwk.NewSet(), kho.EINVALID},
		{"fail/RSA key for ECDH-ES", "000.00.15.H29", mismatched("k4", rsaKey, "enc", jwa.ECDH_ES_A256KW()), kho.EINVALID},
		{"fail/P-384 key for ES256", "000.00.15.H29", mismatched("k5", p384, "sig", jwa.ES256()), kho.EINVALID},
		{"fail/low-order X25519 key", "000.00.15.H29", lowOrder, kho.EINVALID},
		{"ok/public key", "000.00.15.H29", pub, ""},
		{"fail/same kid again", "000.00.15.H29", pub, kho.ECONFLICT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := oauth.Register(ctx, d.docs.DB, kho.AgencyCode(tc.agency), tc.set)
			if kho.ErrorCode(err) != tc.code && !(tc.code == "" && err == nil) {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
		})
	}
}
