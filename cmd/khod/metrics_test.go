package main_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"kho/internal/demo"
	"kho/internal/devidp"
	"kho/internal/testenv"
)

// After a deposit, a consent-checked fetch and a denied fetch, /metrics (on
// its own address) counts each by route, status and latency, the reuse
// decisions by outcome and reason, and the calls to Vault, MinIO and
// PostgreSQL by operation; and no label value is a subject id, a store
// handle or a document id.
func TestMetricsCountRequestsDecisionsAndCalls(t *testing.T) {
	st := testenv.Stack(t)
	db := testenv.DB(t, true)
	if _, err := demo.Seed(testenv.Context(t), db); err != nil {
		t.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	k := startKhod(t, map[string]string{"KHO_DATABASE_SCHEMA": db.Schema(), "KHO_METRICS_LISTEN": metricsAddr})
	k.waitReady(t, 30*time.Second, allOK)
	idp, err := devidp.Load(st.DevIdPKey)
	if err != nil {
		t.Fatal(err)
	}
	token := func(as string) string {
		p, err := devidp.ParseAs(as)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := idp.Mint(p, "kho", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	call := func(as, method, path, ctype string, body io.Reader) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, k.base+path, body)
		req.Header.Set("Authorization", "Bearer "+token(as))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var mb bytes.Buffer
	w := multipart.NewWriter(&mb)
	_ = w.WriteField("metadata", `{"subject_id":"001090000001","type":"GKS","name":"Giấy khai sinh","issued_on":"2024-01-15","media_type":"text/plain"}`)
	f, _ := w.CreateFormFile("file", "gks.txt")
	_, _ = f.Write([]byte("giấy khai sinh"))
	w.Close()
	status, b := call("agency:000.06.16.G09", "POST", "/v1/documents", w.FormDataContentType(), &mb)
	if status != 201 {
		t.Fatalf("deposit: %d %s", status, b)
	}
	docID := regexp.MustCompile(`"id":"([0-9a-f-]{36})"`).FindSubmatch(b)[1]
	handle := regexp.MustCompile(`"subject":"([0-9a-f-]{36})"`).FindSubmatch(b)[1]
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	if status, b := call("citizen:001090000001", "POST", "/v1/me/consents", "application/json", strings.NewReader(`{"grantee":"000.00.15.H29","procedure":"CHC",
		"purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"`+until+`","mode":"once","data_life_days":1}`)); status != 201 {
		t.Fatalf("grant: %d %s", status, b)
	}
	content := "/v1/documents/" + string(docID) + "/content?procedure=CHC"
	if status, b := call("agency:000.00.15.H29", "GET", content, "", nil); status != 200 {
		t.Fatalf("consent-checked fetch: %d %s", status, b)
	}
	if status, b := call("agency:000.00.15.H29", "GET", content, "", nil); status != 403 {
		t.Fatalf("fetch after the one use: %d %s", status, b)
	}
	if status, b := call("agency:000.00.12.H10", "GET", content, "", nil); status != 404 {
		t.Fatalf("fetch by an agency the policy does not admit: %d %s", status, b)
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`kho_http_requests_total{method="POST",route="/v1/documents",status="201"} 1`,
		`kho_http_requests_total{method="GET",route="/v1/documents/:id/content",status="200"} 1`,
		`kho_http_requests_total{method="GET",route="/v1/documents/:id/content",status="403"} 1`,
		`kho_http_requests_total{method="GET",route="/v1/documents/:id/content",status="404"} 1`,
		`kho_http_request_duration_seconds_count{method="GET",route="/v1/documents/:id/content"} 3`,
		`kho_reuse_decisions_total{outcome="allowed",reason=""} 1`,
		`kho_reuse_decisions_total{outcome="denied",reason="consent_used_up"} 1`,
		`kho_reuse_decisions_total{outcome="denied",reason="not_found"} 1`,
		`kho_http_refusals_total{code="forbidden",reason="consent_used_up",route="/v1/documents/:id/content"} 1`,
		`kho_outbound_calls_total{dependency="vault",operation="kho-subjects/decrypt",outcome="ok"}`,
		`kho_outbound_calls_total{dependency="vault",operation="kho-subjects/encrypt",outcome="ok"}`,
		`kho_outbound_calls_total{dependency="minio",operation="get",outcome="ok"}`,
		`kho_outbound_calls_total{dependency="postgres",operation="SELECT",outcome="ok"}`,
		`kho_outbound_call_duration_seconds_bucket{dependency="vault",operation="kho-subjects/decrypt"`,
		`kho_document_bytes_total{direction="deposited"} 16`,
		`kho_document_bytes_total{direction="served"} 16`,
		`kho_audit_events_total `,
		`kho_audit_events_since_checkpoint `,
		`kho_outbox_backlog `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// No label value names a person, a store or a document.
	for _, secret := range []string{"001090000001", string(handle), string(docID), "0101234567"} {
		if strings.Contains(text, secret) {
			t.Errorf("metrics carry %s", secret)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "kho_") && regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-`).MatchString(line) {
			t.Errorf("a label looks like an id: %s", line)
		}
	}
	// The API's port does not serve them.
	if resp, err := http.Get(k.base + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("metrics on the public port: %v %v", resp, err)
	}
}
