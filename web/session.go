package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"kho"
)

// session is a signed-in person's: the principal the identity provider's
// token proved, the CSRF token its forms carry, and the store it acts for
// (a ward, a represented business) when not its own.
type session struct {
	key       []byte // SHA-256 of the cookie's value
	Principal kho.Principal
	CSRF      string
	ActingFor kho.SubjectID
	Expires   time.Time
}

const (
	sessionCookie = "kho_session"
	loginCookie   = "kho_login"
	langCookie    = "kho_lang"
)

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashOf(v string) []byte {
	sum := sha256.Sum256([]byte(v))
	return sum[:]
}

// startSession stores a new session for p and sets its cookie.
func (pt *Portal) startSession(ctx context.Context, w http.ResponseWriter, p kho.Principal) error {
	id := randomToken()
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	expires := p.ExpiresAt
	if max := time.Now().Add(pt.cfg.MaxSession); expires.IsZero() || expires.After(max) {
		expires = max
	}
	if _, err := pt.cfg.DB.Pool.Exec(ctx, `INSERT INTO portal_sessions (id_sha256, principal, csrf, expires_at) VALUES ($1, $2, $3, $4)`,
		hashOf(id), b, randomToken(), expires); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "portal: start the session", err)
	}
	pt.setCookie(w, sessionCookie, id, 0)
	return nil
}

// sessionOf reads the request's session, nil when there is none or it
// ended (idle for too long, or past its token's expiry). A session in use
// is kept alive.
func (pt *Portal) sessionOf(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	key := hashOf(c.Value)
	var s session
	var raw []byte
	var acting string
	err = pt.cfg.DB.Pool.QueryRow(r.Context(), `UPDATE portal_sessions SET seen_at = now()
		WHERE id_sha256 = $1 AND expires_at > now() AND seen_at > now() - make_interval(secs => $2)
		RETURNING principal, csrf, acting_for, expires_at`, key, pt.cfg.IdleTimeout.Seconds()).Scan(&raw, &s.CSRF, &acting, &s.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "portal: read the session", err)
	}
	if err := json.Unmarshal(raw, &s.Principal); err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "portal: the session's principal", err)
	}
	s.key, s.ActingFor = key, kho.SubjectID(acting)
	return &s, nil
}

// endSession removes the session and its cookie.
func (pt *Portal) endSession(ctx context.Context, w http.ResponseWriter, s *session) error {
	pt.setCookie(w, sessionCookie, "", -1)
	if s == nil {
		return nil
	}
	if _, err := pt.cfg.DB.Pool.Exec(ctx, `DELETE FROM portal_sessions WHERE id_sha256 = $1 OR expires_at < now() - interval '1 day'`, s.key); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "portal: end the session", err)
	}
	return nil
}

// setActingFor changes whose store the session shows.
func (pt *Portal) setActingFor(ctx context.Context, s *session, id kho.SubjectID) error {
	if _, err := pt.cfg.DB.Pool.Exec(ctx, `UPDATE portal_sessions SET acting_for = $2 WHERE id_sha256 = $1`, s.key, string(id)); err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "portal: switch the store", err)
	}
	s.ActingFor = id
	return nil
}

// setCookie sets an HttpOnly, SameSite=Lax cookie for the whole site,
// Secure outside dev; maxAge 0 lasts the browser session, -1 deletes.
func (pt *Portal) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: pt.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
}
