package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/client"
	"kho/internal/testenv"
	"kho/oauth"
)

// encryptionKey makes an agency system's key to receive deliveries.
func encryptionKey(t *testing.T, kid string) (jwk.Key, jwk.Set) {
	t.Helper()
	return agencySystemKey(t, kid, "enc", jwa.ECDH_ES_A256KW())
}

// An agency's system, with its own key pairs and kho's Go client: it gets
// a token with private_key_jwt, checks availability, asks for consent, and
// once the citizen approves fetches the document encrypted to its own key;
// the client and node's jose both open it to the original bytes, and the
// use receipt verifies. Without an encryption key the fetch is refused
// before the consent is used.
func TestAgencySystemFetchesAnEncryptedDelivery(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	police := kho.AgencyCode("000.00.15.H29")
	birth := []byte("GIẤY KHAI SINH — Nguyễn Văn A, sinh ngày 01/01/1990 — bản số hoá")
	doc := d.deposit(t, justice, textMeta, birth)

	sig, sigSet := agencyKey(t, "police-sig-1")
	if _, err := oauth.Register(ctx, d.docs.DB, police, sigSet); err != nil {
		t.Fatal(err)
	}
	ts := &client.TokenSource{Agency: string(police), TokenURL: d.url + "/oauth/token", Audience: tokenIssuer + "/oauth/token", Key: sig}
	call := func(method, path, body string, hdr map[string]string) (*http.Response, []byte) {
		tok, err := ts.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		return request(t, method, d.url+path, tok, "application/json", r, hdr)
	}
	resp, b := call("POST", "/v1/availability", `{"subject_id":"001090000001","procedure":"CHC"}`, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), string(doc.ID)) {
		t.Fatalf("availability: %d %s", resp.StatusCode, b)
	}
	resp, b = call("POST", "/v1/consent-requests", `{"subject_id":"001090000001","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"`+
		time.Now().Add(48*time.Hour).UTC().Format(time.RFC3339)+`","mode":"standing","max_uses":2,"data_life_days":30}`, map[string]string{"Idempotency-Key": "req-1"})
	if resp.StatusCode != 201 {
		t.Fatalf("consent request: %d %s", resp.StatusCode, b)
	}
	var req struct{ ID string }
	_ = json.Unmarshal(b, &req)
	resp, b = d.call(t, citizen, "POST", "/v1/consent-requests/"+req.ID+"/approval", "", nil, nil)
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		t.Fatalf("approval: %d %s", resp.StatusCode, b)
	}
	var approved struct{ ID string } // the consent
	_ = json.Unmarshal(b, &approved)

	content := "/v1/documents/" + string(doc.ID) + "/content?procedure=CHC"
	jose := map[string]string{"Accept": "application/jose"}
	// No encryption key yet: refused, and the consent is not used.
	resp, b = call("GET", content, "", jose)
	if resp.StatusCode != 400 || !strings.Contains(string(b), "no_encryption_key") {
		t.Fatalf("encrypted fetch without a key: %d %s", resp.StatusCode, b)
	}
	var uses int
	if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT uses FROM consents WHERE id = $1`, approved.ID).Scan(&uses); err != nil || uses != 0 {
		t.Fatalf("uses after a refused delivery: %d %v", uses, err)
	}
	enc, encSet := encryptionKey(t, "police-enc-1")
	if _, err := oauth.Register(ctx, d.docs.DB, police, encSet); err != nil {
		t.Fatal(err)
	}
	resp, b = call("GET", content, "", jose)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jose" || bytes.Contains(b, []byte("KHAI SINH")) {
		t.Fatalf("encrypted fetch: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	got, err := client.DecryptDelivery(b, enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Content, birth) || got.Document.ID != string(doc.ID) || got.Document.ManifestSignature != "verified" || got.UseReceiptID != resp.Header.Get("Kho-Use-Receipt-Id") {
		t.Fatalf("delivery: %+v", got.Document)
	}
	checkUseReceipt(t, d, resp, doc, approved.ID, birth)
	// Another key does not open it.
	other, _ := encryptionKey(t, "police-enc-1")
	if _, err := client.DecryptDelivery(b, other); err == nil {
		t.Fatal("another key opened the delivery")
	}
	// node's jose opens it too.
	dir := t.TempDir()
	jf, kf := filepath.Join(dir, "delivery.jwe"), filepath.Join(dir, "key.json")
	_ = os.WriteFile(jf, b, 0o600)
	kb, _ := json.Marshal(enc)
	_ = os.WriteFile(kf, kb, 0o600)
	out, err := exec.Command("node", "../scripts/node/decrypt-delivery.mjs", jf, kf).CombinedOutput()
	sum := sha256.Sum256(birth)
	if err != nil || !strings.Contains(string(out), `"sha256":"`+hex.EncodeToString(sum[:])+`"`) || !strings.Contains(string(out), `"typ":"kho-delivery+jwe"`) {
		t.Fatalf("jose: %v %s", err, out)
	}
}
