package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"kho/metrics"
)

// The operations recorded for Vault and MinIO stop before any name: a Vault
// key is named by a store's handle, which must not become a label.
func TestOperationsCarryNoNames(t *testing.T) {
	tests := []struct{ method, url, want string }{
		{"POST", "http://v/v1/kho-subjects/decrypt/6f1c2a4e-0000-4000-8000-000000000000", "kho-subjects/decrypt"},
		{"POST", "http://v/v1/kho-signing/sign/agency-000.06.16.G09/sha2-256", "kho-signing/sign"},
		{"POST", "http://v/v1/auth/approle/login", "auth/approle"},
		{"GET", "http://v/v1/sys/health", "sys/health"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.url, nil)
		if got := metrics.VaultOperation(r); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.url, got, tt.want)
		}
	}
	for url, want := range map[string]string{
		"http://m/bucket/o/abc":                         "get",
		"http://m/bucket?list-type=2":                   "list",
		"http://m/bucket/o/abc?partNumber=2&uploadId=x": "put_part",
	} {
		method := "GET"
		if want == "put_part" {
			method = "PUT"
		}
		if got := metrics.MinIOOperation(httptest.NewRequest(method, url, nil)); got != want {
			t.Errorf("%s: %q, want %q", url, got, want)
		}
	}
}

// Every metric the shipped Grafana dashboard queries is one khod exports.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	m := metrics.New()
	m.ObserveRequest("/v1/me", "GET", 200, time.Millisecond)
	m.ObserveRequest("", "FOO001090000001", 405, time.Millisecond) // a method of the client's own
	m.ObserveRefusal("/v1/me", "forbidden", "wrong_role")
	m.ObserveDecision(false, "consent_required")
	m.ObserveBytes("served", 10)
	m.ObserveReconcile(1, nil)
	m.ObserveReconcile(0, errors.New("down"))
	m.WatchState(func(context.Context) (metrics.State, error) {
		return metrics.State{AuditEvents: 5, CheckpointSize: 3, CheckpointAt: time.Now(), OutboxBacklog: 2}, nil
	})
	tr := m.Transport("vault", metrics.VaultOperation, roundTrip(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(""))}, nil
	}))
	if _, err := tr.RoundTrip(httptest.NewRequest("POST", "http://v/v1/kho-subjects/decrypt/x", nil)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(exposed), "001090000001") {
		t.Error("a method of the client's own became a label")
	}
	if r, err := http.Get(srv.URL + "/debug/pprof/"); err != nil || r.StatusCode != 404 {
		t.Errorf("the metrics server serves more than /metrics: %v", r)
	}
	for _, want := range []string{"kho_audit_events_since_checkpoint 2", "kho_outbox_backlog 2", `kho_reconciler_runs_total{outcome="error"} 1`,
		`kho_http_requests_total{method="other",route="unmatched",status="405"} 1`} {
		if !strings.Contains(string(exposed), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	b, err := os.ReadFile("../deploy/grafana/kho-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	names := regexp.MustCompile(`kho_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range names.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(name, "_bucket")
				if !strings.Contains(string(exposed), base) {
					t.Errorf("panel %q queries %s, which khod does not export", p.Title, name)
				}
				n++
			}
		}
	}
	if n < 10 {
		t.Fatalf("the dashboard queries only %d metrics", n)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
