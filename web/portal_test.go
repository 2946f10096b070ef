package web_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/api"
	"kho/consent"
	"kho/internal/devidp"
	"kho/internal/testenv"
	"kho/storage"
	"kho/web"
)

// site is khod's API and portal over the real services, with the dev
// identity provider's sign-in page.
type site struct {
	url     string
	idp     *devidp.IdP
	docs    *testenv.Documents
	handler http.Handler
}

func newSite(t *testing.T) *site {
	t.Helper()
	docs := testenv.NewDocuments(t)
	idp, err := devidp.LoadOrCreate(filepath.Join(t.TempDir(), "idp.jwk.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := idp.PublicSet()
	if err != nil {
		t.Fatal(err)
	}
	authn, err := api.NewAuthenticator(context.Background(), "kho", []api.IssuerConfig{{Issuer: devidp.Issuer, KeySet: set, Kinds: kho.PrincipalKinds}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	oc := web.OIDC{AuthorizeURL: base + "/dev/idp/authorize", TokenURL: base + "/dev/idp/token", ClientID: "kho-portal", RedirectURL: base + "/auth/callback"}
	portal, err := web.New(web.Config{Logger: slog.New(slog.DiscardHandler), DB: docs.DB, Authenticator: authn, Documents: docs.Svc, Consents: docs.Consents, Audit: docs.Log,
		OIDC: oc, DevIdP: &devidp.OIDC{IdP: idp, ClientID: oc.ClientID, RedirectURI: oc.RedirectURL, Audience: "kho", TTL: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Logger: slog.New(slog.DiscardHandler), Authenticator: authn, Documents: docs.Svc, Audit: docs.Log, Consents: docs.Consents,
		ReceiptKeys: func(ctx context.Context) (jwk.Set, error) { return docs.Keys.JWKS(ctx, consent.ReceiptKey) }, Portal: portal,
		Limits: api.Limits{RequestsPerSecond: 1e6, Burst: 1e6}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	return &site{url: base, idp: idp, docs: docs, handler: srv.Handler()}
}

// browser signs in as one demo user, through the sign-in page, as a
// browser would: cookies and redirects.
func (s *site) browser(t *testing.T, as string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(s.url + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Request.URL.Path, "/dev/idp/authorize") {
		t.Fatalf("login went to %s", resp.Request.URL)
	}
	form := resp.Request.URL.Query()
	form.Set("as", as)
	resp, err = c.PostForm(s.url+"/dev/idp/authorize?"+resp.Request.URL.RawQuery, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" {
		t.Fatalf("after sign-in: %d at %s\n%s", resp.StatusCode, resp.Request.URL, b)
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

var (
	citizen = kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001"}
	justice = kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.06.16.G09"}
	police  = kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.00.15.H29"}
)

// browserStep runs one scenario of scripts/node/portal-browser.mjs in
// Chromium; screenshots go to .kho/artifacts/portal.
func browserStep(t *testing.T, s *site, step string) {
	t.Helper()
	out, _ := filepath.Abs("../.kho/artifacts/portal")
	pdf := filepath.Join(t.TempDir(), "giay-khai-sinh.pdf")
	if err := os.WriteFile(pdf, testenv.PDF("GIẤY KHAI SINH — bản số hoá"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "../scripts/node/portal-browser.mjs", s.url, out, step)
	cmd.Env = append(os.Environ(), "KHO_TEST_PDF="+pdf)
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(b)), "ok") {
		t.Fatalf("browser, %s: %v\n%s", step, err, b)
	}
}

// The portal's people, in Chromium: a citizen signed in through the
// identity provider sees the birth certificate the justice office
// deposited, has the police's consent request explained and approves it;
// after the police fetched the document, the access log says so, in
// Vietnamese and in English; a police officer's checklist marks the birth
// certificate as already digitized and fetches it; a security officer
// finds the fetch, opens its inclusion proof and verifies the trail; a
// guardian acts for the ward. axe-core finds no serious or critical
// violation on any page, in either language; every page is photographed
// at 360 and 1280 px.
func TestPortalInTheBrowser(t *testing.T) {
	s := newSite(t)
	three := 3
	ctx := testenv.Context(t)
	doc, err := s.docs.Svc.Deposit(ctx, justice, &kho.DepositMetadata{SubjectID: citizen.Person, Type: "GKS", Name: "Giấy khai sinh",
		IssuedOn: kho.Date{Time: time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)}, MediaType: "text/plain"}, strings.NewReader("GIẤY KHAI SINH — bản số hoá"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.docs.Consents.RequestConsent(ctx, police, consent.Terms{SubjectID: citizen.Person, Procedure: "CHC", Purpose: "Cấp hộ chiếu phổ thông lần đầu",
		DocumentTypes: []string{"GKS"}, ValidUntil: time.Now().Add(48 * time.Hour), Mode: "standing", MaxUses: &three, DataLifeDays: 30}); err != nil {
		t.Fatal(err)
	}
	browserStep(t, s, "citizen-approve")
	c, err := s.docs.Svc.Fetch(ctx, police, doc.ID, "CHC", nil)
	if err != nil {
		t.Fatalf("the police's fetch after the approval in the browser: %v", err)
	}
	_, _ = io.Copy(io.Discard, c.Body)
	c.Body.Close()
	browserStep(t, s, "citizen-log")
	browserStep(t, s, "officer")
	if _, err := s.docs.Log.MakeCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	browserStep(t, s, "security")

	// The guardian acts for the ward.
	if _, err := s.docs.Svc.Deposit(ctx, justice, &kho.DepositMetadata{SubjectID: "001215000004", Type: "GKS", Name: "Giấy khai sinh",
		IssuedOn: kho.Date{Time: time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC)}, MediaType: "text/plain"}, strings.NewReader("GIẤY KHAI SINH — con")); err != nil {
		t.Fatal(err)
	}
	browserStep(t, s, "guardian")
	browserStep(t, s, "deposit")

	// A legal hold blocks the erasure of that person's store, and says who
	// holds it; released, the store is erased.
	h, err := s.docs.Svc.Resolve(ctx, police, "079085000002")
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(30 * 24 * time.Hour)
	hold, err := s.docs.Svc.PlaceHold(ctx, police, h, storage.HoldRequest{LegalBasis: "QĐ 12/QĐ-CAHN (mẫu)", Until: &until})
	if err != nil {
		t.Fatal(err)
	}
	browserStep(t, s, "erasure-held")
	if err := s.docs.Svc.ReleaseHold(ctx, police, h, hold.ID, ""); err != nil {
		t.Fatal(err)
	}
	browserStep(t, s, "erasure")
}

// As an outsider would try it: a form posted without its CSRF token, or
// with another session's token, is refused and changes nothing; a citizen
// cannot open another citizen's document by its id, nor see their
// requests; pages need a session; the language switch and the sign-in only
// ever go back to this site; a forged session cookie is no session.
func TestPortalRefusesWhatItMust(t *testing.T) {
	s := newSite(t)
	ctx := testenv.Context(t)
	doc, err := s.docs.Svc.Deposit(ctx, justice, &kho.DepositMetadata{SubjectID: citizen.Person, Type: "GKS", Name: "Giấy khai sinh",
		IssuedOn: kho.Date{Time: time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)}, MediaType: "text/plain"}, strings.NewReader("GIẤY KHAI SINH — riêng tư"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := s.docs.Consents.RequestConsent(ctx, police, consent.Terms{SubjectID: citizen.Person, Procedure: "CHC", Purpose: "Cấp hộ chiếu phổ thông lần đầu",
		DocumentTypes: []string{"GKS"}, ValidUntil: time.Now().Add(48 * time.Hour), Mode: "once", DataLifeDays: 30})
	if err != nil {
		t.Fatal(err)
	}
	owner := s.browser(t, "citizen:001090000001")
	other := s.browser(t, "citizen:079085000002")

	// The owner's own page works, and carries a CSRF token.
	code, body := get(t, owner, s.url+"/requests")
	m := csrfRE.FindStringSubmatch(body)
	if code != 200 || m == nil || !strings.Contains(body, req.ID) {
		t.Fatalf("the owner's requests: %d", code)
	}
	ownerToken := m[1]
	_, otherBody := get(t, other, s.url+"/requests")
	otherToken := csrfRE.FindStringSubmatch(otherBody)[1]
	if strings.Contains(otherBody, req.ID) {
		t.Fatal("another citizen sees the owner's consent request")
	}
	post := func(c *http.Client, token string) int {
		t.Helper()
		form := url.Values{"decision": {"approve"}}
		if token != "" {
			form.Set("csrf", token)
		}
		resp, err := c.PostForm(s.url+"/requests/"+req.ID+"/answer", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, got := range map[string]int{
		"no CSRF token":                   post(owner, ""),
		"another session's CSRF token":    post(owner, otherToken),
		"the owner's token, other cookie": post(other, ownerToken),
		"no session at all":               post(&http.Client{}, ownerToken),
	} {
		if got != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, got)
		}
	}
	// Another citizen answering with their own valid token: not theirs.
	if got := post(other, otherToken); got != http.StatusNotFound {
		t.Errorf("another citizen answers the owner's request: %d, want 404", got)
	}
	rs, _ := s.docs.Consents.Requests(ctx, citizen, "")
	for _, r := range rs {
		if r.ID == req.ID && r.Status != "pending" {
			t.Fatalf("a refused form changed the request: %s", r.Status)
		}
	}
	// Documents by id: the owner downloads; the other citizen gets the
	// same 404 as for a document that does not exist.
	if code, body := get(t, owner, s.url+"/documents/"+string(doc.ID)+"/content"); code != 200 || body != "GIẤY KHAI SINH — riêng tư" {
		t.Fatalf("the owner's download: %d", code)
	}
	code, theirs := get(t, other, s.url+"/documents/"+string(doc.ID)+"/content")
	missing := string(kho.NewDocumentID())
	code2, none := get(t, other, s.url+"/documents/"+missing+"/content")
	if code != 404 || code2 != 404 || strings.Contains(theirs, "riêng tư") || stripID(strings.ReplaceAll(theirs, string(doc.ID), "ID")) != stripID(strings.ReplaceAll(none, missing, "ID")) {
		t.Fatalf("another citizen's download: %d / missing %d\n%s\n----\n%s", code, code2, stripID(theirs), stripID(none))
	}
	// A store one does not act for cannot be switched to.
	resp, err := owner.PostForm(s.url+"/acting-for", url.Values{"csrf": {ownerToken}, "store": {"079085000002"}, "back": {"/documents"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("switching to a stranger's store: %d", resp.StatusCode)
	}
	// Pages need a session; a forged cookie is none.
	anon := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/documents", "/requests", "/access-log"} {
		resp, err := anon.Get(s.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("%s without a session: %d %s", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	forged, _ := http.NewRequest("GET", s.url+"/documents", nil)
	forged.AddCookie(&http.Cookie{Name: "kho_session", Value: "forged-session-value"})
	if resp, err := anon.Do(forged); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a forged session cookie: %v", err)
	}
	// Redirects stay on this site.
	for _, back := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example/x", "/ /evil.example"} {
		resp, err := anon.Get(s.url + "/lang?to=en&back=" + url.QueryEscape(back))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Location") != "/" {
			t.Errorf("lang back=%s: Location %q", back, resp.Header.Get("Location"))
		}
	}
	// Pages are for the roles they speak to.
	officer := s.browser(t, "officer:000.00.15.H29:cb01")
	for c, paths := range map[*http.Client][]string{owner: {"/check", "/security"}, officer: {"/requests", "/documents", "/security"}} {
		for _, p := range paths {
			if code, _ := get(t, c, s.url+p); code != http.StatusForbidden {
				t.Errorf("%s for the wrong role: %d", p, code)
			}
		}
	}
	// A download another site's page makes the browser send is refused;
	// fetching for a procedure is a form, not a link.
	for _, site := range []string{"cross-site", "same-site"} {
		for _, p := range []string{"/content", "/verification"} {
			cross, _ := http.NewRequest("GET", s.url+"/documents/"+string(doc.ID)+p, nil)
			cross.Header.Set("Sec-Fetch-Site", site)
			if resp, err := owner.Do(cross); err != nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("%s from a %s page: %v", p, site, err)
			}
		}
	}
	if code, _ := get(t, officer, s.url+"/fetch/"+string(doc.ID)+"?procedure=CHC"); code == http.StatusOK {
		t.Fatal("a fetch by GET")
	}
	// The API's paths stay the API's: problem+json, not a page.
	resp, err = http.Get(s.url + "/v1/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("an API path answered %s", resp.Header.Get("Content-Type"))
	}
}

var requestIDRE = regexp.MustCompile(`<code>[^<]*</code>`)

// stripID removes the request id, which differs between any two pages.
func stripID(page string) string { return requestIDRE.ReplaceAllString(page, "") }

// countingBody is a request body that counts what the server read of it.
type countingBody struct {
	left int
	read int
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), b.left)
	for i := range p[:n] {
		p[i] = 'a'
	}
	b.left -= n
	b.read += n
	return n, nil
}

func (b *countingBody) Close() error { return nil }

// A form posted without a session is refused before its body is read:
// nobody can make the portal hold megabytes of their own.
func TestPortalReadsNoFormWithoutASession(t *testing.T) {
	s := newSite(t)
	body := &countingBody{left: 20 << 20}
	req := httptest.NewRequest(http.MethodPost, "/consents", nil)
	req.Body, req.ContentLength = body, 20<<20
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("a form without a session: %d", rec.Code)
	}
	if body.read > 64<<10 {
		t.Fatalf("the portal read %d bytes of a form from nobody", body.read)
	}
}
