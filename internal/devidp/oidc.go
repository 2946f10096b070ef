package devidp

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"time"

	"kho"
)

// Demo is one demo user offered on the sign-in page.
type Demo struct {
	As    string // as kho dev token --as takes it
	Label string // what the page shows, Vietnamese / English
}

// Demos are the demo data's people, as `kho demo seed` loads them.
var Demos = []Demo{
	{"citizen:001090000001", "Công dân 001090000001 (Hà Nội), người giám hộ / citizen, guardian"},
	{"citizen:079085000002", "Công dân 079085000002 (TP Hồ Chí Minh) / citizen"},
	{"citizen:001215000004", "Công dân 001215000004, trẻ em / a child"},
	{"business:0101234567:001090000001", "Người đại diện theo pháp luật của doanh nghiệp 0101234567 / the business's legal representative"},
	{"officer:000.00.15.H29:cb01", "Cán bộ Công an thành phố Hà Nội / police officer"},
	{"officer:000.06.16.G09:tp01", "Cán bộ Phòng Tư pháp quận Ba Đình / justice officer"},
	{"security:so01", "Cán bộ an ninh thông tin / security officer"},
}

// OIDC is the dev identity provider's OpenID Connect side for the portal:
// an authorization-code flow with PKCE (S256) whose sign-in page lets one
// choose a demo user. It exists only in dev mode; codes live a minute, in
// memory, and are good once.
type OIDC struct {
	IdP *IdP
	// ClientID and RedirectURI are the one client it serves: the portal.
	ClientID, RedirectURI string
	// Audience of the access tokens it issues (kho's).
	Audience string
	TTL      time.Duration

	mu    sync.Mutex
	codes map[string]grant
}

type grant struct {
	p         kho.Principal
	challenge string
	nonce     string
	expires   time.Time
}

var page = template.Must(template.New("idp").Parse(`<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Đăng nhập (môi trường thử) / Sign in (dev)</title>
<style>body{font-family:sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;color:#111}button{display:block;width:100%;margin:.4rem 0;padding:.7rem;font-size:1rem;text-align:left;background:#fff;border:1px solid #555;border-radius:.3rem;color:#111}button:focus{outline:3px solid #0a58ca}label{display:block;margin-top:1rem}input{width:100%;padding:.5rem;font-size:1rem}</style>
</head><body><main>
<h1>Đăng nhập — nhà cung cấp định danh thử / Sign in — dev identity provider</h1>
<p>Chỉ có trong môi trường phát triển. Chọn một người dùng mẫu. / Dev mode only. Choose a demo user.</p>
<form method="post">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
{{range .Demos}}<button type="submit" name="as" value="{{.As}}">{{.Label}}</button>{{end}}
</form>
<form method="post">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
<label for="as">Hoặc nhập / Or type (citizen:…, business:…:…, officer:…:…, security:…)</label>
<input id="as" name="as" autocomplete="off"><button type="submit">Đăng nhập / Sign in</button>
</form></main></body></html>`))

func (o *OIDC) fail(w http.ResponseWriter, status int, msg string) {
	http.Error(w, msg, status)
}

// Authorize serves the sign-in page (GET) and, once a user is chosen
// (POST), sends the browser back to the client with a code.
func (o *OIDC) Authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		o.fail(w, http.StatusBadRequest, "malformed request")
		return
	}
	q := r.Form
	if q.Get("response_type") != "code" || q.Get("client_id") != o.ClientID || q.Get("redirect_uri") != o.RedirectURI ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("state") == "" {
		o.fail(w, http.StatusBadRequest, "authorization request refused: response_type=code, the portal's client_id and redirect_uri, a state and an S256 code_challenge are required")
		return
	}
	params := map[string]string{}
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "state", "nonce", "code_challenge", "code_challenge_method"} {
		params[k] = q.Get(k)
	}
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
		_ = page.Execute(w, map[string]any{"Params": params, "Demos": Demos})
		return
	}
	p, err := ParseAs(r.PostForm.Get("as"))
	if err != nil {
		o.fail(w, http.StatusBadRequest, kho.ErrorMessage(err))
		return
	}
	code := random()
	o.mu.Lock()
	if o.codes == nil {
		o.codes = map[string]grant{}
	}
	for k, g := range o.codes {
		if time.Now().After(g.expires) {
			delete(o.codes, k)
		}
	}
	o.codes[code] = grant{p: p, challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), expires: time.Now().Add(time.Minute)}
	o.mu.Unlock()
	u, _ := url.Parse(o.RedirectURI)
	v := u.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// Token trades a code and its PKCE verifier for an access token (for kho)
// and an ID token (for the portal, with the nonce).
func (o *OIDC) Token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		o.fail(w, http.StatusBadRequest, "POST a form")
		return
	}
	f := r.PostForm
	o.mu.Lock()
	g, ok := o.codes[f.Get("code")]
	delete(o.codes, f.Get("code"))
	o.mu.Unlock()
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !ok || time.Now().After(g.expires) || f.Get("grant_type") != "authorization_code" || f.Get("client_id") != o.ClientID ||
		f.Get("redirect_uri") != o.RedirectURI || subtle.ConstantTimeCompare([]byte(want), []byte(g.challenge)) != 1 {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
		return
	}
	access, err := o.IdP.Mint(g.p, o.Audience, o.TTL)
	if err != nil {
		o.fail(w, http.StatusInternalServerError, "could not sign")
		return
	}
	id, err := o.IdP.MintWith(g.p, o.ClientID, o.TTL, map[string]any{"nonce": g.nonce})
	if err != nil {
		o.fail(w, http.StatusInternalServerError, "could not sign")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "id_token": id, "token_type": "Bearer", "expires_in": int(o.TTL.Seconds())})
}

func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
