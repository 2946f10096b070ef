package api_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/client"
	"kho/consent"
	"kho/internal/testenv"
	"kho/oauth"
	"kho/outbox"
)

// The whole life of a reuse, as two agencies' systems see it through the
// Go client alone, each with its own key pairs: the justice office deposits
// a birth certificate (retrying with its idempotency key); the police get
// a token with private_key_jwt, check availability, ask for consent and,
// once the citizen approves, fetch the document as a segmented JWE to
// their own key, decrypted to the original bytes with the issuer's manifest
// signature and kho's use receipt checked; when the justice office revokes
// the document the police's webhook receives a signed event; when the data
// life ends (on the test's clock) they are told, and acknowledge deletion.
// The operator's steps (registering keys and the webhook) are the
// functions kho agency register and kho agency webhook call.
func TestAgencySystemEndToEndWithTheGoClient(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	const subject = "001090000001"

	policeSig, policeSigSet := agencyKey(t, "police-e2e-sig")
	policeEnc, policeEncSet := encryptionKey(t, "police-e2e-enc")
	justiceSig, justiceSigSet := agencyKey(t, "justice-e2e-sig")
	for agency, sets := range map[kho.AgencyCode][]jwk.Set{police.Agency: {policeSigSet, policeEncSet}, justice.Agency: {justiceSigSet}} {
		for _, set := range sets {
			if _, err := oauth.Register(ctx, d.docs.DB, agency, set); err != nil {
				t.Fatal(err)
			}
		}
	}
	aud := tokenIssuer + "/oauth/token"
	source := func(agency kho.AgencyCode, key jwk.Key) *client.TokenSource {
		return &client.TokenSource{Agency: string(agency), TokenURL: d.url + "/oauth/token", Audience: aud, Key: key, HTTP: http.DefaultClient}
	}
	// Every exchange is checked against the OpenAPI document.
	pol := client.New(d.url, source(police.Agency, policeSig), policeEnc)
	jus := client.New(d.url, source(justice.Agency, justiceSig), nil)
	pol.HTTP, jus.HTTP = http.DefaultClient, http.DefaultClient

	t.Run("token", func(t *testing.T) {
		ts := source(police.Agency, policeSig)
		a, err := ts.Assertion()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ts.Exchange(ctx, a); err != nil {
			t.Fatalf("a fresh assertion: %v", err)
		}
		refused := func(what string, err error) {
			t.Helper()
			var te *client.TokenError
			if !errors.As(err, &te) || te.Code != "invalid_client" || te.Status != http.StatusUnauthorized {
				t.Errorf("%s: %v", what, err)
			}
		}
		_, _, err = ts.Exchange(ctx, a)
		refused("a replayed assertion", err)
		wrongAud := source(police.Agency, policeSig)
		wrongAud.Audience = "https://kho.elsewhere.example/oauth/token"
		_, err = wrongAud.Token(ctx)
		refused("another audience", err)
		expired := source(police.Agency, policeSig)
		expired.Now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
		_, err = expired.Token(ctx)
		refused("an expired assertion", err)
		unregistered, _ := agencyKey(t, "police-e2e-sig") // same kid, another key
		_, err = source(police.Agency, unregistered).Token(ctx)
		refused("an unregistered key", err)
	})

	// 3 MiB and a bit: four segments, the last one short.
	birth := bytes.Repeat([]byte("GIẤY KHAI SINH — Nguyễn Văn A, sinh ngày 01/01/1990 — bản số hoá.\n"), 50_000)
	meta := client.DepositMetadata{SubjectID: subject, Type: "GKS", Name: "Giấy khai sinh", IssuedOn: "2024-01-15", MediaType: "text/plain"}
	doc, err := jus.Deposit(ctx, meta, bytes.NewReader(birth), "e2e-deposit-0001")
	if err != nil {
		t.Fatal(err)
	}
	again, err := jus.Deposit(ctx, meta, bytes.NewReader(birth), "e2e-deposit-0001")
	if err != nil || again.ID != doc.ID {
		t.Fatalf("a retried deposit: %v %+v, first %s", err, again, doc.ID)
	}
	_, b := d.call(t, citizen, "GET", "/v1/me/documents", "", nil, nil)
	if n := strings.Count(string(b), `"type":"GKS"`); n != 1 {
		t.Fatalf("the citizen's store holds %d birth certificates after a retried deposit: %s", n, b)
	}

	avail, err := pol.Availability(ctx, subject, "CHC")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range avail.DocumentTypes {
		for _, x := range a.Documents {
			found = found || x.ID == doc.ID
		}
	}
	if !found {
		t.Fatalf("availability does not list the birth certificate: %+v", avail)
	}
	two := 2
	req, err := pol.RequestConsent(ctx, client.ConsentTerms{SubjectID: subject, Procedure: "CHC", Purpose: "Cấp hộ chiếu / passport",
		DocumentTypes: []string{"GKS"}, ValidUntil: time.Now().Add(48 * time.Hour), Mode: "standing", MaxUses: &two, DataLifeDays: 30}, "e2e-request-0001")
	if err != nil || req.Status != "pending" {
		t.Fatalf("consent request: %v %+v", err, req)
	}
	// The citizen approves, in the portal.
	if resp, b := d.call(t, citizen, "POST", "/v1/consent-requests/"+req.ID+"/approval", "", nil, nil); resp.StatusCode/100 != 2 {
		t.Fatalf("approval: %d %s", resp.StatusCode, b)
	}
	reqs, err := pol.ConsentRequests(ctx)
	var consentID string
	for _, r := range reqs {
		if r.ID == req.ID && r.Status == "approved" {
			consentID = r.ConsentID
		}
	}
	if err != nil || consentID == "" {
		t.Fatalf("the police do not see the approval: %v %+v", err, reqs)
	}

	// The webhook, registered by the operator; what came before it goes
	// nowhere.
	var mu sync.Mutex
	var events [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		events = append(events, body)
		mu.Unlock()
	}))
	defer hook.Close()
	now := time.Now()
	disp, err := outbox.New(outbox.Config{AllowInternal: true, DB: d.docs.DB, Signer: d.docs.Keys, Key: consent.ReceiptKey, Issuer: "urn:kho:test", Backoff: time.Millisecond,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := disp.Route(ctx); err != nil {
		t.Fatal(err)
	}
	if err := outbox.SetWebhook(ctx, d.docs.DB, police.Agency, hook.URL, true); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "giay-khai-sinh.txt")
	got, err := pol.FetchFile(ctx, doc.ID, "CHC", path)
	if err != nil {
		t.Fatal(err)
	}
	if onDisk, _ := os.ReadFile(path); !bytes.Equal(onDisk, birth) {
		t.Fatalf("the fetched file is not the document (%d bytes of %d)", len(onDisk), len(birth))
	}
	u := got.UseReceipt
	if !got.Encrypted || got.Manifest.Issuer != string(justice.Agency) || got.Manifest.SHA256 != doc.SHA256 || u == nil ||
		u.ConsentID != consentID || u.UsesLeft == nil || *u.UsesLeft != 1 || u.DeleteBy == "" || u.Procedure != "CHC" {
		t.Fatalf("fetched: %+v, receipt %+v", got, u)
	}
	reread, err := pol.UseReceipt(ctx, u.ID)
	if err != nil || reread.JWS != u.JWS {
		t.Fatalf("the use receipt read again: %v", err)
	}
	// What kho sends the police opens with their key only (this spends
	// the consent's second use).
	other, _ := encryptionKey(t, "police-e2e-enc")
	if _, err := client.New(d.url, pol.Tokens, other).Fetch(ctx, doc.ID, "CHC", io.Discard); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("a delivery opened with another key: %v", err)
	}
	// Both uses spent: the citizen sees the consent used up, and it can
	// only be revoked now.
	if resp, b := d.call(t, citizen, "GET", "/v1/consents/"+consentID, "", nil, nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"used_up"`) {
		t.Fatalf("a used-up consent reads: %d %s", resp.StatusCode, b)
	}
	if resp, b := d.call(t, citizen, "POST", "/v1/consents/"+consentID+"/pause", "", nil, nil); resp.StatusCode != 409 {
		t.Fatalf("pausing a used-up consent: %d %s", resp.StatusCode, b)
	}

	// The issuer revokes; the police are told.
	if _, err := jus.Revoke(ctx, doc.ID, "cấp nhầm / issued in error"); err != nil {
		t.Fatal(err)
	}
	var lastEvent []byte
	deliver := func(topic, mentions string) *client.Event {
		t.Helper()
		for range 200 {
			if _, err := disp.Route(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := disp.Deliver(ctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			pending := events
			events = nil
			mu.Unlock()
			for _, body := range pending {
				ev, err := pol.VerifyEvent(ctx, body)
				if err != nil {
					t.Fatalf("an event that does not verify: %v", err)
				}
				if ev.Topic == topic && strings.Contains(string(ev.Payload), mentions) {
					lastEvent = body
					return ev
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no %s event about %s reached the webhook", topic, mentions)
		return nil
	}
	deliver("document.revoked", doc.ID)
	// An altered event is refused, and so is an event for another agency.
	parts := strings.Split(string(lastEvent), ".")
	altered := strings.Replace(decodeSeg(t, parts[1]), "document.revoked", "document.restored", 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(altered))
	if _, err := pol.VerifyEvent(ctx, []byte(strings.Join(parts, "."))); err == nil {
		t.Fatal("an altered event verified")
	}
	if _, err := jus.VerifyEvent(ctx, lastEvent); err == nil {
		t.Fatal("the justice office accepted an event addressed to the police")
	}

	// The data life ends 30 days on, for both deliveries.
	if n, err := disp.DeletionDue(ctx); err != nil || n != 0 {
		t.Fatalf("deletions due before the end: %d %v", n, err)
	}
	now = now.Add(31 * 24 * time.Hour)
	if n, err := disp.DeletionDue(ctx); err != nil || n != 2 {
		t.Fatalf("deletions due: %d %v", n, err)
	}
	deliver("delivery.deletion_due", u.ID)
	if at, err := pol.AcknowledgeDeletion(ctx, u.ID); err != nil || at.IsZero() {
		t.Fatalf("acknowledge deletion: %v %v", at, err)
	}
	var p *client.Problem
	if _, err := jus.AcknowledgeDeletion(ctx, u.ID); !errors.As(err, &p) || p.Status != 404 {
		t.Fatalf("another agency acknowledged: %v", err)
	}
}
