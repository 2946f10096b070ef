package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"kho"
	"kho/api"
	"kho/internal/devidp"
	"kho/postgres"
)

//go:embed templates/*.html assets/*
var files embed.FS

// OIDC is the identity provider the portal signs people in with: an
// authorization-code flow with PKCE, the portal a public client.
type OIDC struct {
	AuthorizeURL string // where the browser goes to sign in
	TokenURL     string // where khod trades the code (server to server)
	ClientID     string
	RedirectURL  string // the portal's /auth/callback, as the provider knows it
	HTTP         *http.Client
}

// Config is what the portal is built from. It calls the same services as
// the API, with the signed-in person's principal: every decision is theirs.
type Config struct {
	Logger        *slog.Logger
	DB            *postgres.DB
	Authenticator *api.Authenticator // checks the provider's access token, as for a bearer
	Documents     api.Documents
	Consents      api.Consents
	Audit         api.Audit
	OIDC          OIDC
	// DevIdP, in dev mode only, serves the demo sign-in page and token
	// endpoint at /dev/idp/authorize and /dev/idp/token.
	DevIdP *devidp.OIDC
	// SecureCookies marks cookies Secure (every mode but dev).
	SecureCookies bool
	IdleTimeout   time.Duration // default 15 minutes
	MaxSession    time.Duration // default 8 hours (never past the token's expiry)
}

// Portal serves the pages.
type Portal struct {
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template
}

// New checks cfg and builds the pages.
func New(cfg Config) (*Portal, error) {
	if cfg.Logger == nil || cfg.DB == nil || cfg.Authenticator == nil || cfg.Documents == nil || cfg.Consents == nil || cfg.Audit == nil {
		return nil, kho.Errorf(kho.EINVALID, "web: a logger, a database, an authenticator and the services are required")
	}
	if cfg.OIDC.AuthorizeURL == "" || cfg.OIDC.TokenURL == "" || cfg.OIDC.ClientID == "" || cfg.OIDC.RedirectURL == "" {
		return nil, kho.Errorf(kho.EINVALID, "web: the identity provider's authorize and token URLs, client id and redirect URL are required")
	}
	if cfg.OIDC.HTTP == nil {
		cfg.OIDC.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.MaxSession == 0 {
		cfg.MaxSession = 8 * time.Hour
	}
	pt := &Portal{cfg: cfg, mux: http.NewServeMux(), pages: map[string]*template.Template{}}
	for _, name := range []string{"home", "documents", "requests", "log", "error", "check", "security", "consents", "revoke", "verification", "upload", "erasure"} {
		t, err := template.New("layout.html").Funcs(template.FuncMap{}).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, kho.WrapError(kho.EINTERNAL, "web: template "+name, err)
		}
		pt.pages[name] = t
	}
	m := pt.mux
	m.HandleFunc("GET /{$}", pt.page(pt.home, false))
	m.HandleFunc("GET /login", pt.login)
	m.HandleFunc("GET /auth/callback", pt.callback)
	m.HandleFunc("POST /logout", pt.logoutOrGone)
	m.HandleFunc("GET /lang", pt.lang)
	m.HandleFunc("GET /documents", pt.page(only(pt.documents, "owner"), true))
	m.HandleFunc("GET /documents/{id}/content", pt.page(sameSite(pt.download), true))
	m.HandleFunc("GET /documents/upload", pt.page(only(pt.uploadForm, "owner", "officer"), true))
	m.HandleFunc("POST /documents/upload", pt.pageWith(only(pt.upload, "owner", "officer"), true, true))
	m.HandleFunc("GET /requests", pt.page(only(pt.requests, "owner"), true))
	m.HandleFunc("POST /requests/{id}/answer", pt.page(only(pt.answer, "owner"), true))
	m.HandleFunc("GET /access-log", pt.page(only(pt.accessLog, "owner"), true))
	m.HandleFunc("POST /acting-for", pt.page(pt.switchStore, true))
	m.HandleFunc("GET /consents", pt.page(only(pt.consents, "owner"), true))
	m.HandleFunc("POST /consents/{id}/status", pt.page(only(pt.consentStatus, "owner"), true))
	m.HandleFunc("GET /consents/{id}/receipt", pt.page(sameSite(only(pt.receipt, "owner")), true))
	m.HandleFunc("GET /documents/{id}/verification", pt.page(sameSite(pt.verification), true))
	m.HandleFunc("GET /erasure", pt.page(only(pt.erasure, "owner"), true))
	m.HandleFunc("POST /erasure", pt.page(only(pt.erasure, "owner"), true))
	m.HandleFunc("GET /check", pt.page(only(pt.check, "officer"), true))
	m.HandleFunc("POST /check", pt.page(only(pt.check, "officer"), true))
	m.HandleFunc("POST /check/consent-request", pt.page(only(pt.askConsent, "officer"), true))
	m.HandleFunc("POST /fetch/{id}", pt.page(only(pt.fetch, "officer"), true))
	m.HandleFunc("GET /security", pt.page(only(pt.security, "security"), true))
	m.HandleFunc("POST /security", pt.page(only(pt.security, "security"), true))
	m.HandleFunc("GET /security/export", pt.page(sameSite(only(pt.export, "security")), true))
	m.HandleFunc("GET /assets/", pt.asset)
	if cfg.DevIdP != nil {
		m.HandleFunc("GET /dev/idp/authorize", cfg.DevIdP.Authorize)
		m.HandleFunc("POST /dev/idp/authorize", cfg.DevIdP.Authorize)
		m.HandleFunc("POST /dev/idp/token", cfg.DevIdP.Token)
	}
	m.HandleFunc("/", pt.page(func(http.ResponseWriter, *http.Request, *view) error {
		return kho.Errorf(kho.ENOTFOUND, "no such page")
	}, false))
	return pt, nil
}

// ServeHTTP serves the portal. Pages get their own security policy: own
// scripts and styles only, no framing, forms only to the portal and the
// identity provider.
func (pt *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	form := "'self'"
	if u, err := url.Parse(pt.cfg.OIDC.AuthorizeURL); err == nil && u.Host != "" {
		form += " " + u.Scheme + "://" + u.Host
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action "+form+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	pt.mux.ServeHTTP(w, r)
}

// view is what every page's template gets.
type view struct {
	Lang      string
	Path      string
	Back      string // the page, with its query, to come back to
	Title     string
	Session   *session
	Principal string // who is signed in, in words
	Role      string // owner, officer or security: which pages the menu offers
	ActingFor string
	// Delegations are the stores a citizen may switch to: wards and
	// represented businesses, current ones only.
	Delegations []postgres.Delegation
	Flash       string
	Data        any
}

// T translates for the page's language.
func (v *view) T(key string, args ...any) string { return tr(v.Lang, key, args...) }

// Date and Time format for the page's language.
func (v *view) Date(t time.Time) string { return dateOf(v.Lang, t) }
func (v *view) Time(t time.Time) string { return timeOf(v.Lang, t) }

// langOf is the visitor's language: the remembered choice, else
// Vietnamese.
func langOf(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && c.Value == "en" {
		return "en"
	}
	return "vi"
}

type handler func(w http.ResponseWriter, r *http.Request, v *view) error

// page wraps a handler: it reads the session (required when signedIn),
// checks the CSRF token of every POST, and turns errors into error pages.
func (pt *Portal) page(h handler, signedIn bool) http.HandlerFunc {
	return pt.pageWith(h, signedIn, false)
}

// pageWith is page; a multipart handler (an upload) gets its body unread
// and checks the CSRF token itself, as the body's first part. Other
// handlers refuse multipart bodies.
func (pt *Portal) pageWith(h handler, signedIn, multipart bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := &view{Lang: langOf(r), Path: r.URL.Path, Back: r.URL.RequestURI()}
		s, err := pt.sessionOf(r)
		if err != nil {
			pt.fail(w, r, v, err)
			return
		}
		if s == nil && signedIn {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?back="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			pt.fail(w, r, v, kho.Errorf(kho.EFORBIDDEN, "csrf"))
			return
		}
		isMultipart := strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data")
		if r.Method == http.MethodPost && !(multipart && isMultipart) {
			// Without a session nothing is read: a form is a few hundred
			// bytes, and Go's ParseForm would hold up to 10 MB of anyone's.
			if s == nil || isMultipart {
				pt.fail(w, r, v, kho.Errorf(kho.EFORBIDDEN, "csrf"))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.CSRF)) != 1 {
				pt.fail(w, r, v, kho.Errorf(kho.EFORBIDDEN, "csrf"))
				return
			}
		}
		v.Session = s
		if s != nil {
			v.Principal, v.Role = describe(s.Principal), roleOf(s.Principal)
			if s.Principal.Kind == kho.PrincipalAgencyOfficer {
				v.Principal = string(s.Principal.Staff) + " — " + pt.name(r.Context(), v.Lang, "agency", string(s.Principal.Agency))
			}
			if s.Principal.Kind == kho.PrincipalCitizen {
				ds, err := postgres.Delegations(r.Context(), pt.cfg.DB, s.Principal.Person)
				if err != nil {
					pt.fail(w, r, v, err)
					return
				}
				// A business's store is opened by signing in as its
				// representative; here, a guardian's wards.
				still := s.ActingFor == ""
				for _, d := range ds {
					if d.Kind == "ward" {
						v.Delegations = append(v.Delegations, d)
						still = still || d.Subject == s.ActingFor
					}
				}
				// A guardianship that ended takes the session back to the
				// person's own store.
				if !still {
					if err := pt.setActingFor(r.Context(), s, ""); err != nil {
						pt.fail(w, r, v, err)
						return
					}
				}
			}
			if s.ActingFor != "" {
				v.ActingFor = string(s.ActingFor)
			}
		}
		if err := h(w, r, v); err != nil {
			pt.fail(w, r, v, err)
		}
	}
}

// only keeps a page to the roles it is for (the services still decide
// what each may do): another role gets the 403 page, not a page that
// speaks to someone else.
func only(h handler, roles ...string) handler {
	return func(w http.ResponseWriter, r *http.Request, v *view) error {
		for _, role := range roles {
			if v.Role == role {
				return h(w, r, v)
			}
		}
		return kho.Errorf(kho.EFORBIDDEN, "this page is not for you")
	}
}

// sameSite refuses a request another origin's page made the browser send
// (a sibling subdomain's too), for the GETs that record an access
// (downloads, checks, receipts, the trail's export); a request the person
// made by typing or a bookmark ("none"), or one from a client that does
// not say, passes.
func sameSite(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, v *view) error {
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
			return h(w, r, v)
		}
		return kho.Errorf(kho.EFORBIDDEN, "csrf")
	}
}

// roleOf says which pages a principal's menu offers; the services decide
// what each may actually do.
func roleOf(p kho.Principal) string {
	switch p.Kind {
	case kho.PrincipalCitizen, kho.PrincipalBusinessRep:
		return "owner"
	case kho.PrincipalAgencyOfficer, kho.PrincipalAgency:
		return "officer"
	case kho.PrincipalSecurityOfficer:
		return "security"
	}
	return ""
}

// describe names a principal for the page header.
func describe(p kho.Principal) string {
	switch p.Kind {
	case kho.PrincipalCitizen:
		return string(p.Person)
	case kho.PrincipalBusinessRep:
		return string(p.Person) + " — " + string(p.Business)
	case kho.PrincipalAgencyOfficer:
		return string(p.Staff) + " — " + string(p.Agency)
	case kho.PrincipalAgency:
		return string(p.Agency)
	}
	return string(p.Staff)
}

// render writes a page.
func (pt *Portal) render(w http.ResponseWriter, status int, name string, v *view) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", v.Lang)
	w.WriteHeader(status)
	return pt.pages[name].Execute(w, v)
}

// fail shows an error page in the visitor's language, with the status the
// error's code maps to and the request id, never the error's detail.
func (pt *Portal) fail(w http.ResponseWriter, r *http.Request, v *view, err error) {
	if v == nil {
		v = &view{Lang: langOf(r), Path: r.URL.Path, Back: r.URL.RequestURI()}
	}
	status, key := http.StatusInternalServerError, "err.500"
	switch kho.ErrorCode(err) {
	case kho.ENOTFOUND:
		status, key = http.StatusNotFound, "err.404"
	case kho.EFORBIDDEN:
		status, key = http.StatusForbidden, "err.403"
		if kho.ErrorMessage(err) == "csrf" {
			key = "err.csrf"
		}
	case kho.EINVALID, kho.ECONFLICT, kho.ETOOLARGE:
		status, key = http.StatusBadRequest, "err.400"
	case kho.EUNAVAILABLE, kho.ETOOMANY:
		status, key = http.StatusServiceUnavailable, "err.503"
	}
	id := w.Header().Get("X-Request-Id")
	if status >= 500 {
		pt.cfg.Logger.ErrorContext(r.Context(), "portal page failed", "path", r.URL.Path, "request_id", id, "err", err.Error())
	}
	v.Title = v.T("err.title")
	v.Data = map[string]string{"Message": v.T(key), "RequestID": id, "Detail": detailOf(err, status), "DetailLabel": v.T("err.detail")}
	_ = pt.render(w, status, "error", v)
}

// detailOf is what a 400 may say about the request (kho's safe message).
func detailOf(err error, status int) string {
	if status == http.StatusBadRequest {
		return kho.ErrorMessage(err)
	}
	return ""
}

func (pt *Portal) asset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/assets/")
	b, err := fs.ReadFile(files, "assets/"+name)
	if err != nil || strings.Contains(name, "/") {
		pt.fail(w, r, nil, kho.Errorf(kho.ENOTFOUND, "no such file"))
		return
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

// lang remembers the chosen language and goes back where the visitor was.
func (pt *Portal) lang(w http.ResponseWriter, r *http.Request) {
	to := "vi"
	if r.URL.Query().Get("to") == "en" {
		to = "en"
	}
	http.SetCookie(w, &http.Cookie{Name: langCookie, Value: to, Path: "/", MaxAge: 365 * 24 * 3600, HttpOnly: true, Secure: pt.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, localPath(r.URL.Query().Get("back")), http.StatusSeeOther)
}

// localPath keeps a redirect on this site: a path, not a URL elsewhere.
// Browsers drop tabs and newlines and read a backslash as a slash, so a
// path with any of those, or any control character or space, is refused.
func localPath(p string) string {
	for _, c := range p {
		if c <= ' ' || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return "/"
	}
	return p
}

// login sends the browser to the identity provider with a fresh state and
// PKCE verifier, kept in a short-lived cookie.
func (pt *Portal) login(w http.ResponseWriter, r *http.Request) {
	state, verifier := randomToken(), randomToken()
	sum := sha256.Sum256([]byte(verifier))
	back := localPath(r.URL.Query().Get("back"))
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: state + "." + verifier + "." + base64.RawURLEncoding.EncodeToString([]byte(back)),
		Path: "/auth/callback", MaxAge: 600, HttpOnly: true, Secure: pt.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
	u, err := url.Parse(pt.cfg.OIDC.AuthorizeURL)
	if err != nil {
		pt.fail(w, r, nil, kho.WrapError(kho.EINTERNAL, "authorize URL", err))
		return
	}
	q := u.Query()
	for k, v := range map[string]string{"response_type": "code", "client_id": pt.cfg.OIDC.ClientID, "redirect_uri": pt.cfg.OIDC.RedirectURL,
		"scope": "openid", "state": state, "code_challenge": base64.RawURLEncoding.EncodeToString(sum[:]), "code_challenge_method": "S256",
		"ui_locales": langOf(r)} {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// callback finishes the sign-in: the state must be the one this browser
// was sent with; the code and verifier are traded for an access token,
// which is checked like any bearer token before a session is made.
func (pt *Portal) callback(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(loginCookie)
	parts := []string{}
	if err == nil {
		parts = strings.Split(c.Value, ".")
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/auth/callback", MaxAge: -1, HttpOnly: true, Secure: pt.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
	q := r.URL.Query()
	if len(parts) != 3 || q.Get("state") == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(parts[0])) != 1 || q.Get("code") == "" {
		pt.fail(w, r, nil, kho.Errorf(kho.EINVALID, "the sign-in did not start here, or took too long: sign in again"))
		return
	}
	tok, err := pt.exchange(r.Context(), q.Get("code"), parts[1])
	if err != nil {
		pt.fail(w, r, nil, err)
		return
	}
	p, err := pt.cfg.Authenticator.Authenticate(r.Context(), tok)
	if err != nil {
		if kho.ErrorCode(err) != kho.EUNAVAILABLE {
			err = kho.Errorf(kho.EFORBIDDEN, "the identity provider's token was not accepted")
		}
		pt.fail(w, r, nil, err)
		return
	}
	if err := pt.startSession(r.Context(), w, p); err != nil {
		pt.fail(w, r, nil, err)
		return
	}
	back, _ := base64.RawURLEncoding.DecodeString(parts[2])
	http.Redirect(w, r, localPath(string(back)), http.StatusSeeOther)
}

func (pt *Portal) exchange(ctx context.Context, code, verifier string) (string, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"client_id": {pt.cfg.OIDC.ClientID}, "redirect_uri": {pt.cfg.OIDC.RedirectURL}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pt.cfg.OIDC.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", kho.WrapError(kho.EINTERNAL, "token request", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := pt.cfg.OIDC.HTTP.Do(req)
	if err != nil {
		return "", kho.WrapError(kho.EUNAVAILABLE, "the identity provider did not answer", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.AccessToken == "" {
		if resp.StatusCode >= 500 {
			return "", kho.Errorf(kho.EUNAVAILABLE, "the identity provider failed")
		}
		return "", kho.Errorf(kho.EINVALID, "the identity provider refused the sign-in: sign in again")
	}
	return out.AccessToken, nil
}

// logoutOrGone signs out; a session that already ended (idle) needs no
// token to be left: the browser just goes home.
func (pt *Portal) logoutOrGone(w http.ResponseWriter, r *http.Request) {
	if s, err := pt.sessionOf(r); err == nil && s == nil {
		pt.setCookie(w, sessionCookie, "", -1)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	pt.page(pt.logout, true)(w, r)
}

func (pt *Portal) logout(w http.ResponseWriter, r *http.Request, v *view) error {
	if err := pt.endSession(r.Context(), w, v.Session); err != nil {
		return err
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// maxForm bounds a form's body (uploads are multipart and bounded apart).
const maxForm = 64 << 10
