// Package oauth lets agencies' systems authenticate as machines: OAuth 2.0
// client credentials with private_key_jwt client authentication (RFC 6749
// 4.4, RFC 7521, RFC 7523). An agency registers its public keys; its system
// signs a short client assertion with its private key and trades it at
// POST /oauth/token for a short-lived access token, which kho signs with a
// Transit key and khod trusts like any configured issuer. No secret is
// shared, and an assertion is accepted once.
//
// oauth imports the root and postgres packages; the signer is handed in.
package oauth

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"kho"
	"kho/postgres"
)

// AssertionType is the client_assertion_type of RFC 7523.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// KeyName is the Transit key that signs access tokens.
const KeyName = "agency-access-token"

// TokenType is the JWT typ of the access tokens kho issues (RFC 9068).
const TokenType = "at+jwt"

// Scopes an agency's system may ask for; what each allows is decided in
// policies.Authorize.
var Scopes = []string{"documents:deposit", "documents:read", "documents:fetch", "consent:request"}

// MaxAssertionLifetime bounds exp - iat of a client assertion: it is meant
// for one token request, now.
const MaxAssertionLifetime = 5 * time.Minute

// Signer signs the access tokens: *vault.Transit meets it.
type Signer interface {
	SignCompact(ctx context.Context, key string, payload []byte, typ string) (string, error)
}

// Config configures the token endpoint.
type Config struct {
	DB     *postgres.DB
	Signer Signer
	Key    string // the Transit key that signs access tokens
	// Issuer is the access tokens' iss, khod's public URL; Audiences are
	// what a client assertion's aud may be: the token endpoint's URL and
	// the issuer (RFC 7523 3, item 3).
	Issuer    string
	Audiences []string
	// TokenAudience is the access tokens' aud: what khod's authenticator
	// expects.
	TokenAudience string
	TTL           time.Duration // access token life (default 5 min)
	Now           func() time.Time
}

// Server answers token requests.
type Server struct{ cfg Config }

// New validates cfg.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.DB == nil || cfg.Signer == nil:
		return nil, kho.Errorf(kho.EINVALID, "oauth: a database and a signer are required")
	case cfg.Key == "" || cfg.Issuer == "" || len(cfg.Audiences) == 0 || cfg.TokenAudience == "":
		return nil, kho.Errorf(kho.EINVALID, "oauth: the signing key, issuer, accepted audiences and token audience are required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Minute
	}
	if cfg.TTL < time.Minute || cfg.TTL > time.Hour {
		return nil, kho.Errorf(kho.EINVALID, "oauth: access tokens live between 1 minute and 1 hour")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}, nil
}

// Error is an OAuth error response (RFC 6749 5.2).
type Error struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func fail(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

// Token is a successful token response (RFC 6749 5.1).
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	ID          string `json:"-"` // the access token's jti
}

// Request is a token request's form fields.
type Request struct {
	GrantType, AssertionType, Assertion, ClientID, Scope string
}

// Issue checks a client credentials request authenticated by a client
// assertion and issues an access token. A refusal is an *Error; a
// dependency that fails is a kho.Error (EUNAVAILABLE).
func (s *Server) Issue(ctx context.Context, r Request) (*Token, kho.AgencyCode, error) {
	if r.GrantType != "client_credentials" {
		return nil, "", fail(400, "unsupported_grant_type", "grant_type must be client_credentials")
	}
	if r.AssertionType != AssertionType || r.Assertion == "" {
		return nil, "", fail(401, "invalid_client", "authenticate with client_assertion_type %s and a client_assertion (private_key_jwt)", AssertionType)
	}
	scopes := strings.Fields(r.Scope)
	if len(scopes) == 0 {
		scopes = Scopes
	}
	for _, sc := range scopes {
		if !slices.Contains(Scopes, sc) {
			return nil, "", fail(400, "invalid_scope", "unknown scope %q (known: %s)", sc, strings.Join(Scopes, " "))
		}
	}
	// Read iss without trusting it, only to find the client's keys; the
	// verified parse checks it again.
	insecure, err := jwt.ParseInsecure([]byte(r.Assertion))
	if err != nil {
		return nil, "", fail(401, "invalid_client", "the client assertion is not a well-formed JWT")
	}
	iss, _ := insecure.Issuer()
	agency := kho.AgencyCode(iss)
	if agency.Validate() != nil || (r.ClientID != "" && r.ClientID != iss) {
		return nil, "", fail(401, "invalid_client", "the client assertion's iss must be the agency's code, and client_id, when given, the same")
	}
	keys, err := Keys(ctx, s.cfg.DB, agency, "sig")
	if err != nil {
		return nil, "", err
	}
	// One answer whether the client has no key or the wrong one: the
	// endpoint does not say which agencies are registered.
	const unverified = "the client assertion is not signed by a current key of this client, or is malformed or expired"
	if keys.Len() == 0 {
		return nil, "", fail(401, "invalid_client", unverified)
	}
	now := s.cfg.Now()
	tok, err := jwt.Parse([]byte(r.Assertion),
		jwt.WithKeySet(keys, jws.WithRequireKid(true)),
		jwt.WithIssuer(iss), jwt.WithSubject(iss),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(30*time.Second),
		jwt.WithRequiredClaim(jwt.ExpirationKey), jwt.WithRequiredClaim(jwt.JwtIDKey), jwt.WithRequiredClaim(jwt.AudienceKey),
	)
	if err != nil {
		return nil, "", fail(401, "invalid_client", unverified)
	}
	aud, _ := tok.Audience()
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(s.cfg.Audiences, a) }) {
		return nil, "", fail(401, "invalid_client", "the client assertion's aud must be %s", s.cfg.Audiences[0])
	}
	exp, _ := tok.Expiration()
	if iat, ok := tok.IssuedAt(); ok && exp.Sub(iat) > MaxAssertionLifetime {
		return nil, "", fail(401, "invalid_client", "the client assertion lives longer than %s", MaxAssertionLifetime)
	}
	if exp.Sub(now) > MaxAssertionLifetime+30*time.Second {
		return nil, "", fail(401, "invalid_client", "the client assertion expires more than %s from now", MaxAssertionLifetime)
	}
	jti, _ := tok.JwtID()
	if len(jti) == 0 || len(jti) > 128 {
		return nil, "", fail(401, "invalid_client", "the client assertion's jti must be 1 to 128 characters")
	}
	// Once only: the jti is kept until the assertion expires.
	tag, err := s.cfg.DB.Pool.Exec(ctx, `WITH gone AS (DELETE FROM oauth_assertions WHERE expires_at < now() - interval '1 minute')
		INSERT INTO oauth_assertions (agency, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, string(agency), jti, exp.Add(30*time.Second))
	if err != nil {
		return nil, "", kho.WrapError(kho.EUNAVAILABLE, "oauth: record the assertion", err)
	}
	if tag.RowsAffected() == 0 {
		return nil, "", fail(401, "invalid_client", "the client assertion was used before: make a new one, with a new jti, for each request")
	}
	id := uuid.NewString()
	claims := map[string]any{
		"iss": s.cfg.Issuer, "sub": string(agency), "aud": s.cfg.TokenAudience, "iat": now.Unix(), "exp": now.Add(s.cfg.TTL).Unix(),
		"jti": id, "client_id": string(agency), "scope": strings.Join(scopes, " "),
		kho.ClaimKind: string(kho.PrincipalAgency), kho.ClaimAgency: string(agency),
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, "", kho.WrapError(kho.EINTERNAL, "oauth: token claims", err)
	}
	at, err := s.cfg.Signer.SignCompact(ctx, s.cfg.Key, payload, TokenType)
	if err != nil {
		return nil, "", err
	}
	return &Token{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(s.cfg.TTL.Seconds()), Scope: strings.Join(scopes, " "), ID: id}, agency, nil
}

// Keys reads an agency's current (not retired) public keys for a use,
// newest first.
func Keys(ctx context.Context, db *postgres.DB, agency kho.AgencyCode, use string) (jwk.Set, error) {
	rows, err := db.Pool.Query(ctx, `SELECT jwk FROM agency_client_keys WHERE agency = $1 AND use = $2 AND retired_at IS NULL ORDER BY added_at DESC, kid`, string(agency), use)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "oauth: read the client's keys", err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "oauth: read the client's keys", err)
	}
	set := jwk.NewSet()
	for _, raw := range raws {
		k, err := jwk.ParseKey(raw)
		if err != nil {
			return nil, kho.WrapError(kho.EINTEGRITY, "oauth: a stored client key does not parse", err)
		}
		if err := set.AddKey(k); err != nil {
			return nil, kho.WrapError(kho.EINTERNAL, "oauth: key set", err)
		}
	}
	return set, nil
}

// fitsAlgorithm checks that a key is of the type and size its alg needs:
// a key that cannot do what it claims would fail only when used (a
// delivery refused after the consent's use was spent).
func fitsAlgorithm(k jwk.Key, alg string) error {
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return fmt.Errorf("not a usable public key")
	}
	switch pub := raw.(type) {
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ECDH-ES+A256KW": pub.Curve}[alg]
		if want == nil || pub.Curve != want || (alg == "ECDH-ES+A256KW" && pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() && pub.Curve != elliptic.P521()) {
			return fmt.Errorf("an EC key on %s does not fit %s", pub.Curve.Params().Name, alg)
		}
	case *rsa.PublicKey:
		if alg != "PS256" && alg != "RS256" {
			return fmt.Errorf("an RSA key does not fit %s", alg)
		}
		if pub.N.BitLen() < 2048 {
			return fmt.Errorf("an RSA key needs at least 2048 bits")
		}
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return fmt.Errorf("an Ed25519 key does not fit %s", alg)
		}
	case *ecdh.PublicKey:
		if alg != "ECDH-ES+A256KW" {
			return fmt.Errorf("an X25519 key does not fit %s", alg)
		}
	default:
		return fmt.Errorf("a %T key does not fit %s", raw, alg)
	}
	if alg == "ECDH-ES+A256KW" {
		// A point that is on no curve or of low order fails only when
		// used: encrypt to it once now.
		if _, err := jwe.Encrypt([]byte("kho"), jwe.WithKey(jwa.ECDH_ES_A256KW(), k), jwe.WithContentEncryption(jwa.A256GCM()), jwe.WithCompact()); err != nil {
			return fmt.Errorf("nothing can be encrypted to this key")
		}
	}
	return nil
}

// allowed are the algorithms a client key may use, by key type and curve.
var allowed = map[string]bool{"ES256": true, "ES384": true, "EdDSA": true, "PS256": true, "RS256": true, "ECDH-ES+A256KW": true}

// Register adds an agency's public keys (a JWKS): "sig" keys sign client
// assertions, "enc" keys receive encrypted deliveries. Private keys, keys
// without a kid, and unknown algorithms are refused; a kid already
// registered for the agency is a conflict. It returns the kids added.
func Register(ctx context.Context, db *postgres.DB, agency kho.AgencyCode, set jwk.Set) ([]string, error) {
	if err := agency.Validate(); err != nil {
		return nil, err
	}
	if set.Len() == 0 {
		return nil, kho.Errorf(kho.EINVALID, "the key set holds no key")
	}
	type entry struct {
		kid, use string
		raw      []byte
	}
	var entries []entry
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		if kid == "" {
			return nil, kho.Errorf(kho.EINVALID, "key %d has no kid", i+1)
		}
		if isPrivate(k) {
			return nil, kho.Errorf(kho.EINVALID, "key %s is a private key: register only the public part", kid)
		}
		use, _ := k.KeyUsage()
		if use != "sig" && use != "enc" {
			return nil, kho.Errorf(kho.EINVALID, `key %s must say "use": "sig" (client assertions) or "enc" (deliveries)`, kid)
		}
		alg, ok := k.Algorithm()
		if !ok || !allowed[alg.String()] {
			return nil, kho.Errorf(kho.EINVALID, `key %s must name its "alg": ES256, ES384, EdDSA, PS256 or RS256 to sign, ECDH-ES+A256KW to receive`, kid)
		}
		if (use == "enc") != (alg.String() == "ECDH-ES+A256KW") {
			return nil, kho.Errorf(kho.EINVALID, "key %s: %s is not an algorithm for use %q", kid, alg, use)
		}
		if err := fitsAlgorithm(k, alg.String()); err != nil {
			return nil, kho.Errorf(kho.EINVALID, "key %s: %s", kid, err)
		}
		raw, err := json.Marshal(k)
		if err != nil {
			return nil, kho.WrapError(kho.EINVALID, "key "+kid, err)
		}
		entries = append(entries, entry{kid, use, raw})
	}
	var kids []string
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM agencies WHERE code = $1)`, string(agency)).Scan(&exists); err != nil {
			return kho.WrapError(kho.EUNAVAILABLE, "register keys", err)
		}
		if !exists {
			return kho.Errorf(kho.ENOTFOUND, "agency %s is not registered in kho", agency)
		}
		for _, e := range entries {
			tag, err := tx.Exec(ctx, `INSERT INTO agency_client_keys (agency, kid, use, jwk) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, string(agency), e.kid, e.use, e.raw)
			if err != nil {
				return kho.WrapError(kho.EUNAVAILABLE, "register keys", err)
			}
			if tag.RowsAffected() == 0 {
				return kho.Errorf(kho.ECONFLICT, "agency %s already has a key %s: give a new key a new kid", agency, e.kid)
			}
			kids = append(kids, e.kid)
		}
		return nil
	})
	return kids, err
}

// Retire stops accepting a key (rotation): assertions it signs are refused
// from now on.
func Retire(ctx context.Context, db *postgres.DB, agency kho.AgencyCode, kid string) error {
	tag, err := db.Pool.Exec(ctx, `UPDATE agency_client_keys SET retired_at = now() WHERE agency = $1 AND kid = $2 AND retired_at IS NULL`, string(agency), kid)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "retire key", err)
	}
	if tag.RowsAffected() == 0 {
		return kho.Errorf(kho.ENOTFOUND, "agency %s has no current key %s", agency, kid)
	}
	return nil
}

func isPrivate(k jwk.Key) bool {
	for _, f := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if k.Has(f) {
			return true
		}
	}
	return false
}

// StatusOf maps an error from Issue to an HTTP status and OAuth body.
func StatusOf(err error) (int, *Error) {
	var oe *Error
	if errors.As(err, &oe) {
		return oe.Status, oe
	}
	if kho.ErrorCode(err) == kho.EUNAVAILABLE {
		return http.StatusServiceUnavailable, &Error{Code: "temporarily_unavailable", Description: kho.ErrorMessage(err)}
	}
	return http.StatusInternalServerError, &Error{Code: "server_error", Description: "the token could not be issued"}
}
