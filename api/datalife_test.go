package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"kho/consent"
	"kho/internal/testenv"
	"kho/outbox"
)

// When a delivery's data life ends, kho tells the agency (a signed event
// to its webhook) and the citizen (the inbox), once; the agency
// acknowledges deleting its copy, and only it may. The clock is the
// test's.
func TestDataLifeEndIsNotifiedAndDeletionAcknowledged(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	doc := d.deposit(t, justice, textMeta, []byte("GIẤY KHAI SINH — thời hạn lưu giữ"))
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	if resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(
		`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"`+until+`","mode":"once","data_life_days":30}`), nil); resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	resp, b := d.call(t, police, "GET", "/v1/documents/"+string(doc.ID)+"/content?procedure=CHC", "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("fetch: %d %s", resp.StatusCode, b)
	}
	receipt := resp.Header.Get("Kho-Use-Receipt-Id")

	var mu sync.Mutex
	var events []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		events = append(events, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	now := time.Now()
	disp, err := outbox.New(outbox.Config{AllowInternal: true, DB: d.docs.DB, Signer: d.docs.Keys, Key: consent.ReceiptKey, Issuer: "urn:kho:test", Backoff: time.Millisecond,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := disp.Route(ctx); err != nil { // what came before the webhook goes nowhere
		t.Fatal(err)
	}
	if err := outbox.SetWebhook(ctx, d.docs.DB, "000.00.15.H29", hook.URL, true); err != nil {
		t.Fatal(err)
	}
	// Before the end of the data life: nothing.
	if n, err := disp.DeletionDue(ctx); err != nil || n != 0 {
		t.Fatalf("deletions due now: %d %v", n, err)
	}
	now = now.Add(31 * 24 * time.Hour)
	if n, err := disp.DeletionDue(ctx); err != nil || n != 1 {
		t.Fatalf("deletions due after 31 days: %d %v", n, err)
	}
	if n, _ := disp.DeletionDue(ctx); n != 0 {
		t.Fatal("a deletion was announced twice")
	}
	if _, err := disp.Route(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := disp.Deliver(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(events) != 1 {
		t.Fatalf("webhook got %d events", len(events))
	}
	ev := events[0]
	mu.Unlock()
	_, jwks := request(t, "GET", d.url+"/.well-known/jwks.json", "", "", nil, nil)
	out, err := joseVerify(t, []byte(ev), jwks, outbox.EventType)
	if err != nil || !strings.Contains(string(out), `"topic":"delivery.deletion_due"`) || !strings.Contains(string(out), receipt) {
		t.Fatalf("event: %v %s", err, out)
	}
	if resp, b := d.call(t, citizen, "GET", "/v1/me/notifications", "", nil, nil); resp.StatusCode != 200 || !strings.Contains(string(b), "delivery.deletion_due") {
		t.Fatalf("the citizen's inbox: %d %s", resp.StatusCode, b)
	}
	// Only the agency that fetched acknowledges; twice is once.
	if resp, b := d.call(t, justice, "POST", "/v1/use-receipts/"+receipt+"/deletion", "", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("another agency acknowledged: %d %s", resp.StatusCode, b)
	}
	if resp, b := d.call(t, citizen, "POST", "/v1/use-receipts/"+receipt+"/deletion", "", nil, nil); resp.StatusCode != 403 {
		t.Fatalf("the citizen acknowledged: %d %s", resp.StatusCode, b)
	}
	var first struct {
		At time.Time `json:"deletion_acknowledged_at"`
	}
	resp, b = d.call(t, police, "POST", "/v1/use-receipts/"+receipt+"/deletion", "", nil, nil)
	if resp.StatusCode != 200 || json.Unmarshal(b, &first) != nil || first.At.IsZero() {
		t.Fatalf("acknowledge: %d %s", resp.StatusCode, b)
	}
	var again struct {
		At time.Time `json:"deletion_acknowledged_at"`
	}
	_, b = d.call(t, police, "POST", "/v1/use-receipts/"+receipt+"/deletion", "", nil, nil)
	if json.Unmarshal(b, &again) != nil || !again.At.Equal(first.At) {
		t.Fatalf("acknowledged twice: %s", b)
	}
}
