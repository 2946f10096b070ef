// Package client is the Go client for agencies' systems: it authenticates
// with a private key (OAuth 2.0 client credentials, private_key_jwt) and
// calls kho's API. No secret is shared with kho; the private key never
// leaves the agency's system.
package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// TokenSource gets and caches access tokens from kho's token endpoint.
type TokenSource struct {
	Agency   string  // the agency's code: the client id
	TokenURL string  // https://kho.example.vn/oauth/token
	Audience string  // the assertion's aud, when kho is reached at another address than its public one (default TokenURL)
	Key      jwk.Key // the agency system's private signing key, with kid and alg
	Scopes   []string
	HTTP     *http.Client
	Now      func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

// Assertion makes a client assertion (RFC 7523): signed by Key, for
// TokenURL, valid for two minutes, with a fresh jti.
func (s *TokenSource) Assertion() (string, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	alg, ok := s.Key.Algorithm()
	if !ok {
		return "", fmt.Errorf("client: the key names no alg")
	}
	sa, ok := alg.(jwa.SignatureAlgorithm)
	if !ok {
		if sa, ok = jwa.LookupSignatureAlgorithm(alg.String()); !ok {
			return "", fmt.Errorf("client: %s is not a signature algorithm", alg)
		}
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	aud := s.Audience
	if aud == "" {
		aud = s.TokenURL
	}
	t, err := jwt.NewBuilder().Issuer(s.Agency).Subject(s.Agency).Audience([]string{aud}).
		IssuedAt(now()).Expiration(now().Add(2 * time.Minute)).JwtID(hex.EncodeToString(jti)).Build()
	if err != nil {
		return "", err
	}
	b, err := jwt.Sign(t, jwt.WithKey(sa, s.Key))
	return string(b), err
}

// TokenError is the token endpoint's refusal (RFC 6749 5.2).
type TokenError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("token endpoint: %d %s: %s", e.Status, e.Code, e.Description)
}

// Token returns a valid access token, asking for a new one when the cached
// one has less than 30 seconds left.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && time.Until(s.expires) > 30*time.Second {
		return s.token, nil
	}
	a, err := s.Assertion()
	if err != nil {
		return "", err
	}
	tok, ttl, err := s.Exchange(ctx, a)
	if err != nil {
		return "", err
	}
	s.token, s.expires = tok, time.Now().Add(ttl)
	return s.token, nil
}

// Exchange trades one client assertion for an access token and how long
// it lasts; Token does this when it needs to. An assertion is good for one
// exchange: kho refuses it a second time.
func (s *TokenSource) Exchange(ctx context.Context, a string) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {a}, "client_id": {s.Agency}}
	if len(s.Scopes) > 0 {
		form.Set("scope", strings.Join(s.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("token endpoint: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{Status: resp.StatusCode}
		if json.Unmarshal(body, te) != nil || te.Code == "" {
			te.Code, te.Description = "unexpected_answer", strings.TrimSpace(string(body))
		}
		return "", 0, te
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", 0, fmt.Errorf("token endpoint: the answer holds no access token")
	}
	return tok.AccessToken, time.Duration(tok.ExpiresIn) * time.Second, nil
}

// GenerateKeys makes an agency system's two P-256 key pairs: one to sign
// client assertions (ES256, use "sig") and one to receive deliveries
// (ECDH-ES+A256KW, use "enc"), with kids prefix+"-sig" and prefix+"-enc".
// public holds both public keys: the JWKS to hand to kho's operator (kho
// agency register). The private keys never leave the agency's system.
func GenerateKeys(prefix string) (sig, enc jwk.Key, public jwk.Set, err error) {
	public = jwk.NewSet()
	mk := func(use string, alg jwa.KeyAlgorithm) (jwk.Key, error) {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		k, err := jwk.Import(priv)
		if err != nil {
			return nil, err
		}
		for name, v := range map[string]any{jwk.KeyIDKey: prefix + "-" + use, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: use} {
			if err := k.Set(name, v); err != nil {
				return nil, err
			}
		}
		pub, err := k.PublicKey()
		if err != nil {
			return nil, err
		}
		return k, public.AddKey(pub)
	}
	if sig, err = mk("sig", jwa.ES256()); err != nil {
		return nil, nil, nil, err
	}
	if enc, err = mk("enc", jwa.ECDH_ES_A256KW()); err != nil {
		return nil, nil, nil, err
	}
	return sig, enc, public, nil
}
