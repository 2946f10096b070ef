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

	"kho"
	"kho/consent"
	"kho/internal/testenv"
	"kho/outbox"
)

// An agency that fetched a document learns when its issuer revokes it: kho
// POSTs a signed event to the agency's webhook, retrying while the webhook
// fails, and node's jose verifies it against the JWKS. A webhook that keeps
// failing leaves the delivery dead, for an operator to replay.
func TestRevocationIsPushedToTheAgencyThatFetched(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	birth := []byte("GIẤY KHAI SINH — bản để thu hồi")
	doc := d.deposit(t, justice, textMeta, birth)
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(
		`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"`+until+`","mode":"standing","data_life_days":30}`), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	if resp, b := d.call(t, police, "GET", "/v1/documents/"+string(doc.ID)+"/content?procedure=CHC", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("fetch: %d %s", resp.StatusCode, b)
	}

	disp, err := outbox.New(outbox.Config{AllowInternal: true, DB: d.docs.DB, Signer: d.docs.Keys, Key: consent.ReceiptKey, Issuer: "urn:kho:test", Backoff: time.Millisecond, MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	// What happened before the webhook existed goes nowhere.
	if _, err := disp.Route(ctx); err != nil {
		t.Fatal(err)
	}
	// The police's webhook fails twice, then takes the event.
	var mu sync.Mutex
	var calls int
	var got []byte
	var gotID string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		got, _ = io.ReadAll(r.Body)
		gotID = r.Header.Get("Kho-Event-Id")
	}))
	defer hook.Close()
	if err := outbox.SetWebhook(ctx, d.docs.DB, "000.00.15.H29", hook.URL, true); err != nil {
		t.Fatal(err)
	}
	if err := outbox.SetWebhook(ctx, d.docs.DB, "000.00.15.H29", "ftp://example", false); err == nil {
		t.Fatal("a non-https webhook was accepted")
	}
	if resp, b := d.call(t, justice, "POST", "/v1/documents/"+string(doc.ID)+"/revocation", "application/json", strings.NewReader(`{"reason":"cấp nhầm / issued in error"}`), nil); resp.StatusCode != 200 {
		t.Fatalf("revoke: %d %s", resp.StatusCode, b)
	}
	// Retries are due within milliseconds here; poll until the event lands.
	for i := 0; i < 500; i++ {
		if _, err := disp.Route(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := disp.Deliver(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		done := got != nil
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if got == nil || calls != 3 {
		t.Fatalf("the webhook got %d calls and %q", calls, got)
	}
	_, jwks := request(t, "GET", d.url+"/.well-known/jwks.json", "", "", nil, nil)
	out, err := joseVerify(t, got, jwks, outbox.EventType)
	if err != nil {
		t.Fatalf("jose does not verify the event: %v %s", err, out)
	}
	var ev outbox.Event
	_ = json.Unmarshal(out, &ev)
	if ev.Topic != "document.revoked" || ev.Agency != "000.00.15.H29" || ev.ID != gotID || !strings.Contains(string(ev.Payload), string(doc.ID)) {
		t.Fatalf("event: %s (id header %s)", out, gotID)
	}
	// The citizen's inbox says the same, and nobody else's does.
	resp, b = d.call(t, citizen, "GET", "/v1/me/notifications", "", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"topic":"document.revoked"`) || !strings.Contains(string(b), string(doc.ID)) {
		t.Fatalf("citizen's notifications: %d %s", resp.StatusCode, b)
	}
	if resp, b := d.call(t, stranger, "GET", "/v1/me/notifications", "", nil, nil); resp.StatusCode != 200 || strings.Contains(string(b), string(doc.ID)) {
		t.Fatalf("another citizen's notifications: %d %s", resp.StatusCode, b)
	}
	if resp, _ := d.call(t, police, "GET", "/v1/me/notifications", "", nil, nil); resp.StatusCode != 403 {
		t.Fatalf("an agency read an inbox: %d", resp.StatusCode)
	}
	list, err := outbox.List(ctx, d.docs.DB, "delivered", 10)
	if err != nil || len(list) != 1 || list[0].Attempts != 3 {
		t.Fatalf("deliveries: %+v %v", list, err)
	}

	// A webhook that keeps failing: dead after the last attempt, then
	// replayed by an operator.
	if err := outbox.SetWebhook(ctx, d.docs.DB, "000.00.15.H29", "http://127.0.0.1:1/hook", true); err != nil {
		t.Fatal(err)
	}
	if resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(
		`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"lần hai / again","document_types":["GKS"],"valid_until":"`+until+`","mode":"once","data_life_days":0}`), nil); resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	short, _ := outbox.New(outbox.Config{AllowInternal: true, DB: d.docs.DB, Signer: d.docs.Keys, Key: consent.ReceiptKey, Issuer: "urn:kho:test", Backoff: time.Millisecond, MaxAttempts: 2})
	var dead []outbox.Delivery
	for i := 0; i < 500 && len(dead) == 0; i++ {
		_, _ = short.Route(ctx)
		_, _ = short.Deliver(ctx)
		dead, _ = outbox.List(ctx, d.docs.DB, "dead", 10)
		time.Sleep(5 * time.Millisecond)
	}
	if len(dead) != 1 || dead[0].Topic != "consent.granted" || dead[0].LastError == "" {
		t.Fatalf("dead deliveries: %+v", dead)
	}
	if err := outbox.Replay(ctx, d.docs.DB, dead[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Replay(ctx, d.docs.DB, dead[0].ID); err == nil {
		t.Fatal("a pending delivery was replayed")
	}
}

// Outside dev, kho does not call into its own network: a webhook whose name
// resolves to a loopback (or private, link-local) address is never called,
// and the delivery says why. Removing the webhook stops deliveries.
func TestWebhooksDoNotReachInternalAddresses(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	var calls int
	var mu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
	}))
	defer hook.Close()
	strict, err := outbox.New(outbox.Config{DB: d.docs.DB, Signer: d.docs.Keys, Key: consent.ReceiptKey, Issuer: "urn:kho:test", Backoff: time.Millisecond, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Route(ctx); err != nil {
		t.Fatal(err)
	}
	// Named, not numbered: the address is checked when it is called.
	named := strings.Replace(hook.URL, "127.0.0.1", "localhost", 1)
	if err := outbox.SetWebhook(ctx, d.docs.DB, police.Agency, named, true); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	if resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(
		`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"`+until+`","mode":"once","data_life_days":0}`), nil); resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	if _, err := strict.Route(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Deliver(ctx); err != nil {
		t.Fatal(err)
	}
	dead, err := outbox.List(ctx, d.docs.DB, "dead", 10)
	mu.Lock()
	defer mu.Unlock()
	if err != nil || len(dead) != 1 || !strings.Contains(dead[0].LastError, "internal") || calls != 0 {
		t.Fatalf("a webhook on loopback: %d calls, dead %+v %v", calls, dead, err)
	}
	if err := outbox.RemoveWebhook(ctx, d.docs.DB, police.Agency); err != nil {
		t.Fatal(err)
	}
	if err := outbox.RemoveWebhook(ctx, d.docs.DB, police.Agency); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("removing a webhook twice: %v", err)
	}
}
