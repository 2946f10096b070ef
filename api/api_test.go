package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"kho"
	"kho/api"
)

// syncBuffer collects log lines from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	srv  *httptest.Server
	logs *syncBuffer
	sign *signer
}

func newFixture(t *testing.T, checks ...api.Check) *fixture {
	t.Helper()
	s := newSigner(t)
	logs := &syncBuffer{}
	srv, err := api.New(api.Config{
		Logger:        slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Authenticator: newAuth(t, s),
		Checks:        checks,
		CheckTimeout:  300 * time.Millisecond,
		Version:       "test",
		Documents:     noDocuments{},
		Audit:         &recordingAudit{},
		Consents:      noConsents{},
		ReceiptKeys:   noKeys,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &fixture{srv: ts, logs: logs, sign: s}
}

func (f *fixture) do(t *testing.T, method, path, token string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	return request(t, method, f.srv.URL+path, token, "", nil, hdr)
}

// request sends one request and reads the whole answer.
func request(t testing.TB, method, url, token, contentType string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) api.Problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json; body %s", ct, body)
	}
	var p api.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != resp.StatusCode || p.Code == "" || p.RequestID == "" || p.RequestID != resp.Header.Get("X-Request-Id") {
		t.Fatalf("problem incomplete: %+v (status %d)", p, resp.StatusCode)
	}
	return p
}

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	good := f.sign.sign(t, claims())
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		status int
		code   string
	}{
		{"ok/healthz needs no token", "GET", "/healthz", "", 200, ""},
		{"ok/me", "GET", "/v1/me", good, 200, ""},
		{"fail/me without token", "GET", "/v1/me", "", 401, kho.EUNAUTHORIZED},
		{"fail/me with garbage token", "GET", "/v1/me", "garbage", 401, kho.EUNAUTHORIZED},
		{"fail/me with expired token", "GET", "/v1/me", f.sign.sign(t, func() map[string]any {
			c := claims()
			c["iat"], c["nbf"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
			return c
		}()), 401, kho.EUNAUTHORIZED},
		{"fail/unknown route", "GET", "/v1/nothing", good, 404, kho.ENOTFOUND},
		{"fail/unknown route outside v1", "GET", "/nothing", "", 404, kho.ENOTFOUND},
		{"fail/wrong method", "DELETE", "/healthz", "", 405, kho.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, tt.token, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if tt.code == "" {
				return
			}
			p := decodeProblem(t, resp, body)
			if p.Code != tt.code {
				t.Fatalf("code %s, want %s", p.Code, tt.code)
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestMeAnswersWithTheCallersOwnIdentity(t *testing.T) {
	f := newFixture(t)
	c := claims()
	c[kho.ClaimKind], c[kho.ClaimBusiness] = "business_rep", "0101234567"
	resp, body := f.do(t, "GET", "/v1/me", f.sign.sign(t, c), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var me map[string]any
	if err := json.Unmarshal(body, &me); err != nil {
		t.Fatal(err)
	}
	if me["kind"] != "business_rep" || me["person"] != "001090000001" || me["business"] != "0101234567" || me["store_of"] != "0101234567" {
		t.Fatalf("me = %v", me)
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.do(t, "GET", "/healthz", "", map[string]string{"X-Request-Id": "upstream-req-12345"})
	if got := resp.Header.Get("X-Request-Id"); got != "upstream-req-12345" {
		t.Errorf("caller's id not kept: %q", got)
	}
	resp, _ = f.do(t, "GET", "/healthz", "", map[string]string{"X-Request-Id": "bad id\" with {json}"})
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.ContainsAny(got, "\" {}") {
		t.Errorf("unsafe caller id not replaced: %q", got)
	}
	resp, _ = f.do(t, "GET", "/healthz", "", nil)
	if len(resp.Header.Get("X-Request-Id")) != 36 {
		t.Errorf("no generated id: %q", resp.Header.Get("X-Request-Id"))
	}
	if !strings.Contains(f.logs.String(), `"request_id":"upstream-req-12345"`) {
		t.Errorf("log lines lack the request id:\n%s", f.logs.String())
	}
}

func TestLogsCarryNoPersonalData(t *testing.T) {
	f := newFixture(t)
	const pin, ent = "001090000001", "0101234567"
	c := claims()
	c[kho.ClaimKind], c[kho.ClaimBusiness] = "business_rep", ent
	tok := f.sign.sign(t, c)
	// Identifiers in the path, the query and a failing token's claims.
	f.do(t, "GET", "/v1/me?subject="+pin, tok, nil)
	f.do(t, "GET", "/v1/subjects/"+pin+"/documents", tok, nil)
	bad := claims()
	bad["sub"] = "079085000002"
	bad["aud"] = []string{"other"}
	f.do(t, "GET", "/v1/me", f.sign.sign(t, bad), nil)
	logs := f.logs.String()
	if strings.Count(logs, `"msg":"request"`) != 3 {
		t.Fatalf("want 3 request lines, got:\n%s", logs)
	}
	for _, id := range []string{pin, ent, "079085000002"} {
		if strings.Contains(logs, id) {
			t.Errorf("logs carry identifier %s:\n%s", id, logs)
		}
	}
	if !strings.Contains(logs, `"route":"/v1/me"`) || !strings.Contains(logs, `"kind":"business_rep"`) {
		t.Errorf("logs lack route or principal kind:\n%s", logs)
	}
}

func TestReadyz(t *testing.T) {
	ok := api.Check{Name: "postgres", Check: func(context.Context) error { return nil }}
	down := api.Check{Name: "minio", Check: func(context.Context) error {
		return kho.WrapError(kho.EUNAVAILABLE, "storage: MinIO not reachable", errors.New("dial tcp 127.0.0.1:19000: secret detail"))
	}}
	slow := api.Check{Name: "vault", Check: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	panicky := api.Check{Name: "broken", Check: func(context.Context) error { panic("adapter bug") }}
	tests := []struct {
		name   string
		checks []api.Check
		status int
		fail   []string
	}{
		{"ok/all healthy", []api.Check{ok}, 200, nil},
		{"fail/one down", []api.Check{ok, down}, 503, []string{"minio"}},
		{"fail/one hangs past the timeout", []api.Check{ok, slow}, 503, []string{"vault"}},
		{"fail/a panicking check", []api.Check{ok, panicky}, 503, []string{"broken"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.checks...)
			resp, body := f.do(t, "GET", "/readyz", "", nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			var out struct {
				Status string                     `json:"status"`
				Checks map[string]api.CheckResult `json:"checks"`
			}
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatal(err)
			}
			if len(out.Checks) != len(tt.checks) {
				t.Fatalf("checks %v", out.Checks)
			}
			for _, name := range tt.fail {
				if out.Checks[name].Status != "fail" || out.Checks[name].Error == "" {
					t.Errorf("%s: %+v", name, out.Checks[name])
				}
			}
			if strings.Contains(string(body), "secret detail") {
				t.Errorf("readiness leaks internal error detail: %s", body)
			}
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	s := newSigner(t)
	if _, err := api.New(api.Config{Logger: slog.New(slog.DiscardHandler), Authenticator: newAuth(t, s)}); err == nil {
		t.Error("no document service accepted")
	}
	if _, err := api.New(api.Config{Authenticator: newAuth(t, s), Documents: noDocuments{}, Audit: &recordingAudit{}, Consents: noConsents{}, ReceiptKeys: noKeys}); err == nil {
		t.Error("no logger accepted")
	}
	if _, err := api.New(api.Config{Logger: slog.New(slog.DiscardHandler), Documents: noDocuments{}, Audit: &recordingAudit{}, Consents: noConsents{}, ReceiptKeys: noKeys}); err == nil {
		t.Error("no authenticator accepted")
	}
	if _, err := api.New(api.Config{Logger: slog.New(slog.DiscardHandler), Authenticator: newAuth(t, s), Documents: noDocuments{}, Audit: &recordingAudit{}, Consents: noConsents{}, ReceiptKeys: noKeys, Checks: []api.Check{{Name: "x"}}}); err == nil {
		t.Error("check without function accepted")
	}
}
