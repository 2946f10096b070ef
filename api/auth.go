package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"kho"
	"kho/audit"
)

// MaxTokenLifetime bounds exp-iat of accepted tokens: a leaked token is of
// use for this long at most.
const MaxTokenLifetime = 12 * time.Hour

// IssuerConfig names an identity provider khod trusts and where its keys are.
// Exactly one of JWKSURL and KeySet is set.
type IssuerConfig struct {
	Issuer  string  // the exact iss claim value
	JWKSURL string  // fetched, cached and refreshed
	KeySet  jwk.Set // static keys (the dev identity provider, tests)
	// Kinds are the principal kinds this provider may assert: a citizen
	// portal's provider asserts citizens and business representatives, an
	// agency's asserts agencies and their officers, the internal staff
	// directory security officers and operators. A token asserting any
	// other kind is refused. Required.
	Kinds []kho.PrincipalKind
	// AllowHTTP lets JWKSURL be plain http (dev mode only); otherwise it
	// must be https.
	AllowHTTP bool
	// FetchTimeout bounds the first fetch of JWKSURL, retries included
	// (default 10s); khod does not start without its issuers' keys.
	FetchTimeout time.Duration
}

// Authenticator turns bearer tokens into principals. It is the only code in
// khod that does.
type Authenticator struct {
	audience string
	issuers  map[string]jwk.Set
	kinds    map[string][]kho.PrincipalKind
	cache    *jwk.Cache
	now      func() time.Time
	verified verifiedTokens
}

// verifiedTokens remembers, by their SHA-256, tokens whose signature and
// claims were checked, for at most a minute and never past their expiry:
// an agency's system sends the same token with every request for minutes,
// and checking its ECDSA signature each time was a tenth of a download's
// CPU. A key withdrawn from an issuer's set stops admitting its tokens
// within that minute.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	p     kho.Principal
	until time.Time
}

const (
	verifiedFor      = time.Minute
	maxVerifiedCache = 20_000
)

func (v *verifiedTokens) get(key [sha256.Size]byte, now time.Time) (kho.Principal, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[key]
	if !ok || !now.Before(e.until) {
		return kho.Principal{}, false
	}
	return e.p, true
}

func (v *verifiedTokens) put(key [sha256.Size]byte, p kho.Principal, until time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerifiedCache {
		// Bounded: start afresh rather than keep an index of ages.
		v.m = make(map[[sha256.Size]byte]verifiedToken)
	}
	v.m[key] = verifiedToken{p: p, until: until}
}

// NewAuthenticator validates the issuers, registers remote key sets with a
// refreshing cache (waiting for their first fetch) and returns the
// authenticator. ctx bounds the first fetches and the cache's life.
func NewAuthenticator(ctx context.Context, audience string, issuers []IssuerConfig) (*Authenticator, error) {
	if audience == "" {
		return nil, kho.Errorf(kho.EINVALID, "auth: an audience is required")
	}
	if len(issuers) == 0 {
		return nil, kho.Errorf(kho.EINVALID, "auth: at least one trusted token issuer is required")
	}
	a := &Authenticator{audience: audience, issuers: map[string]jwk.Set{}, kinds: map[string][]kho.PrincipalKind{}, now: time.Now}
	for _, is := range issuers {
		if is.Issuer == "" {
			return nil, kho.Errorf(kho.EINVALID, "auth: issuer name is empty")
		}
		if _, dup := a.issuers[is.Issuer]; dup {
			return nil, kho.Errorf(kho.EINVALID, "auth: issuer %q configured twice", is.Issuer)
		}
		if len(is.Kinds) == 0 {
			return nil, kho.Errorf(kho.EINVALID, "auth: issuer %q must list the principal kinds it may assert", is.Issuer)
		}
		for _, k := range is.Kinds {
			if !slices.Contains(kho.PrincipalKinds, k) {
				return nil, kho.Errorf(kho.EINVALID, "auth: issuer %q lists unknown principal kind %q", is.Issuer, k)
			}
		}
		a.kinds[is.Issuer] = is.Kinds
		switch {
		case is.KeySet != nil && is.JWKSURL == "":
			if is.KeySet.Len() == 0 {
				return nil, kho.Errorf(kho.EINVALID, "auth: issuer %q has an empty key set", is.Issuer)
			}
			a.issuers[is.Issuer] = is.KeySet
		case is.KeySet == nil && is.JWKSURL != "":
			u, err := url.Parse(is.JWKSURL)
			if err != nil || !(u.Scheme == "https" || (u.Scheme == "http" && is.AllowHTTP)) || u.Host == "" {
				return nil, kho.Errorf(kho.EINVALID, "auth: JWKS URL of issuer %q must be an https URL (plain http only in dev mode)", is.Issuer)
			}
			if a.cache == nil {
				c, err := jwk.NewCache(ctx, httprc.NewClient())
				if err != nil {
					return nil, kho.WrapError(kho.EINTERNAL, "auth: JWKS cache", err)
				}
				a.cache = c
			}
			timeout := is.FetchTimeout
			if timeout <= 0 {
				timeout = 10 * time.Second
			}
			rctx, cancel := context.WithTimeout(ctx, timeout)
			err = a.cache.Register(rctx, is.JWKSURL)
			cancel()
			if err != nil {
				return nil, kho.WrapError(kho.EUNAVAILABLE, fmt.Sprintf("auth: cannot fetch the JWKS of issuer %q", is.Issuer), err)
			}
			set, err := a.cache.CachedSet(is.JWKSURL)
			if err != nil {
				return nil, kho.WrapError(kho.EINTERNAL, "auth: JWKS cache", err)
			}
			a.issuers[is.Issuer] = set
		default:
			return nil, kho.Errorf(kho.EINVALID, "auth: issuer %q needs exactly one of a JWKS URL and a key set", is.Issuer)
		}
	}
	return a, nil
}

// Authenticate verifies a compact JWT and returns the principal it names.
// Errors are EUNAUTHORIZED with a message safe to return to the caller.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (kho.Principal, error) {
	key := sha256.Sum256([]byte(token))
	now := a.now()
	if p, ok := a.verified.get(key, now); ok {
		return p, nil
	}
	p, err := a.authenticate(token)
	if err != nil {
		return p, err
	}
	a.verified.put(key, p, minTime(p.ExpiresAt, now.Add(verifiedFor)))
	return p, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (a *Authenticator) authenticate(token string) (kho.Principal, error) {
	unauth := func(msg string, err error) (kho.Principal, error) {
		return kho.Principal{}, kho.WrapError(kho.EUNAUTHORIZED, msg, err)
	}
	// Read iss without trusting anything, only to choose the key set; the
	// verified parse below checks iss again.
	insecure, err := jwt.ParseInsecure([]byte(token))
	if err != nil {
		return unauth("bearer token is not a well-formed JWT", err)
	}
	iss, _ := insecure.Issuer()
	set, ok := a.issuers[iss]
	if !ok {
		return unauth("bearer token is from an issuer kho does not trust", nil)
	}
	if critical(token) {
		// RFC 7515 §4.1.11: a recipient must refuse extensions it does not
		// understand, and kho understands none.
		return unauth("bearer token names critical header extensions kho does not understand", nil)
	}
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKeySet(set),
		jwt.WithIssuer(iss),
		jwt.WithAudience(a.audience),
		jwt.WithClock(jwt.ClockFunc(a.now)),
		jwt.WithAcceptableSkew(30*time.Second),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.IssuedAtKey),
		jwt.WithRequiredClaim(jwt.JwtIDKey),
		jwt.WithRequiredClaim(jwt.SubjectKey),
	)
	if err != nil {
		return unauth("bearer token is invalid or expired", err)
	}
	exp, _ := tok.Expiration()
	iat, _ := tok.IssuedAt()
	if exp.Sub(iat) > MaxTokenLifetime {
		return unauth(fmt.Sprintf("bearer token lives longer than %s", MaxTokenLifetime), nil)
	}
	p, err := principalFromToken(tok)
	if err != nil {
		return unauth("bearer token does not name a valid principal", err)
	}
	if !slices.Contains(a.kinds[iss], p.Kind) {
		return unauth(fmt.Sprintf("issuer %s may not assert principals of kind %s", iss, p.Kind), nil)
	}
	p.Issuer = iss
	p.ExpiresAt = exp
	if tok.Has("scope") {
		// An access token from kho's token endpoint: its scope bounds it.
		p.Scoped, p.Scope = true, stringClaim(tok, "scope")
	}
	return p, nil
}

// critical reports whether a compact token's protected header carries a
// "crit" member (or cannot be read, which verification then reports).
func critical(token string) bool {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(b, &h) != nil {
		return false
	}
	_, crit := h["crit"]
	return crit
}

func stringClaim(tok jwt.Token, name string) string {
	var s string
	if err := tok.Get(name, &s); err != nil {
		return ""
	}
	return s
}

// principalFromToken maps verified claims to a principal and validates it.
func principalFromToken(tok jwt.Token) (kho.Principal, error) {
	sub, _ := tok.Subject()
	jti, _ := tok.JwtID()
	p := kho.Principal{Kind: kho.PrincipalKind(stringClaim(tok, kho.ClaimKind)), TokenID: jti}
	agency := kho.AgencyCode(stringClaim(tok, kho.ClaimAgency))
	business := stringClaim(tok, kho.ClaimBusiness)
	switch p.Kind {
	case kho.PrincipalCitizen:
		p.Person = kho.SubjectID(sub)
	case kho.PrincipalBusinessRep:
		p.Person, p.Business = kho.SubjectID(sub), kho.SubjectID(business)
	case kho.PrincipalAgency:
		// An agency's system authenticates as the agency itself.
		if string(agency) != sub {
			return p, kho.Errorf(kho.EINVALID, "agency token's sub and %s differ", kho.ClaimAgency)
		}
		p.Agency = agency
	case kho.PrincipalAgencyOfficer:
		p.Agency, p.Staff = agency, kho.StaffID(sub)
	case kho.PrincipalSecurityOfficer, kho.PrincipalOperator:
		p.Staff = kho.StaffID(sub)
	}
	if p.Kind != kho.PrincipalBusinessRep && business != "" {
		return p, kho.Errorf(kho.EINVALID, "%s is only for business representatives", kho.ClaimBusiness)
	}
	if p.Kind != kho.PrincipalAgency && p.Kind != kho.PrincipalAgencyOfficer && agency != "" {
		return p, kho.Errorf(kho.EINVALID, "%s is only for agencies and their officers", kho.ClaimAgency)
	}
	if len(jti) == 0 || len(jti) > 128 {
		return p, kho.Errorf(kho.EINVALID, "jti must be 1 to 128 characters")
	}
	return p, p.Validate()
}

// authFailed records a failed authentication from the caller's address in
// the audit trail (aggregated, see authenticate) and, past the address's
// allowance, answers 429 and reports true.
func authFailed(c *gin.Context, trail Audit, f *failures, why string) bool {
	ctx := c.Request.Context()
	record, over, flush := f.note(c.ClientIP(), c.FullPath(), time.Now())
	for _, ev := range flush {
		if aerr := trail.Record(ctx, ev); aerr != nil {
			_ = c.Error(aerr)
		}
	}
	if record {
		if aerr := trail.Record(ctx, audit.Event{Action: audit.AuthFailed, Outcome: audit.Denied,
			Reason: why, Details: map[string]any{"route": c.FullPath()}}); aerr != nil {
			_ = c.Error(aerr)
		}
	}
	if over {
		tooMany(c, f.window, "too many failed authentications from this address")
	}
	return over
}

// authenticate is the one middleware that establishes who is calling. Every
// route behind it sees a validated kho.Principal in the request context.
//
// A presented token that fails is recorded in the audit trail, aggregated
// per source address: the first failure of a window at once, the others as
// one count when the window ends (a missing token is not recorded: that is
// every anonymous probe). Past its allowance a source's failures answer 429;
// its valid tokens still pass, so a flood from behind a shared address
// (a NAT, an agency's proxy) does not lock out the honest callers there.
func authenticate(a *Authenticator, trail Audit, f *failures) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		scheme, token, ok := strings.Cut(h, " ")
		if h == "" {
			errorf(c, kho.EUNAUTHORIZED, "a bearer token is required")
			return
		}
		ctx := c.Request.Context()
		fail := func(err error) {
			if !authFailed(c, trail, f, kho.ErrorMessage(err)) {
				writeError(c, err)
			}
		}
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			fail(kho.Errorf(kho.EUNAUTHORIZED, "the Authorization header must be \"Bearer <token>\""))
			return
		}
		p, err := a.Authenticate(ctx, strings.TrimSpace(token))
		if err != nil {
			fail(err)
			return
		}
		c.Request = c.Request.WithContext(kho.NewContext(ctx, p))
		c.Next()
	}
}
