package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/api"
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

// A segmented delivery (Accept: application/vnd.kho.jwe-stream) of a
// document whose size is a multiple of the segment size (no empty last
// segment, which some JOSE libraries cannot open): node's jose opens
// every segment to the original bytes; the Go client does too, and refuses
// the stream cut short, reordered, spliced with another delivery's segment
// or extended, and a delivery an outsider encrypted to the agency's public
// key with the right headers and other content.
func TestSegmentedDeliveryAndItsTampering(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 2*api.SegmentSize/16)
	doc := d.deposit(t, justice, textMeta, content)
	sig, sigSet := agencyKey(t, "police-seg-sig")
	enc, encSet := encryptionKey(t, "police-seg-enc")
	for _, set := range []jwk.Set{sigSet, encSet} {
		if _, err := oauth.Register(ctx, d.docs.DB, police.Agency, set); err != nil {
			t.Fatal(err)
		}
	}
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	if resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(
		`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"`+until+`","mode":"standing","data_life_days":30}`), nil); resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	stream := map[string]string{"Accept": api.MediaTypeJWEStream}
	path := "/v1/documents/" + string(doc.ID) + "/content?procedure=CHC"
	resp, first := d.call(t, police, "GET", path, "", nil, stream)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != api.MediaTypeJWEStream {
		t.Fatalf("segmented fetch: %d %s %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), first)
	}
	receipt := resp.Header.Get("Kho-Use-Receipt")
	resp, second := d.call(t, police, "GET", path, "", nil, stream)
	secondReceipt := resp.Header.Get("Kho-Use-Receipt")
	lines := strings.Split(strings.TrimSuffix(string(first), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d segments for two segments' worth of content", len(lines))
	}

	dir := t.TempDir()
	jf, kf := filepath.Join(dir, "delivery"), filepath.Join(dir, "key.json")
	_ = os.WriteFile(jf, first, 0o600)
	kb, _ := json.Marshal(enc)
	_ = os.WriteFile(kf, kb, 0o600)
	out, err := exec.Command("node", "../scripts/node/decrypt-delivery.mjs", jf, kf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"sha256":"`+doc.SHA256+`"`) || !strings.Contains(string(out), `"segments":2`) {
		t.Fatalf("jose: %v %s", err, out)
	}
	// jose refuses the segments out of order too.
	_ = os.WriteFile(jf, []byte(lines[1]+"\n"+lines[0]+"\n"), 0o600)
	if out, err := exec.Command("node", "../scripts/node/decrypt-delivery.mjs", jf, kf).CombinedOutput(); err == nil {
		t.Fatalf("jose accepted reordered segments: %s", out)
	}

	// A forged delivery: the genuine first header, other content,
	// encrypted to the police's public key as anyone can.
	hdr := segmentHeader(t, lines[0], enc)
	hdr["kho_stream"] = map[string]any{"id": hdr["kho_stream"].(map[string]any)["id"], "seq": 0, "last": true}
	pub, _ := enc.PublicKey()
	forged := string(encryptWith(t, pub, []byte("giấy tờ giả / forged"), hdr)) + "\n"
	compact := hdr
	compact["typ"] = api.DeliveryType
	delete(compact, "kho_stream")
	oneJWE := encryptWith(t, pub, content, compact)

	// The client reads through a man in the middle: it fetches from kho
	// for real (the client's nonce and all), then changes what it passes
	// on; everything else goes to kho untouched.
	type answer struct{ typ, body, receipt string }
	var mutate func(genuine answer) answer
	upstream, _ := url.Parse(d.url)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/content") {
			httputil.NewSingleHostReverseProxy(upstream).ServeHTTP(w, r)
			return
		}
		req, _ := http.NewRequest("GET", d.url+r.URL.RequestURI(), nil)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a := mutate(answer{resp.Header.Get("Content-Type"), string(b), resp.Header.Get("Kho-Use-Receipt")})
		w.Header().Set("Content-Type", a.typ)
		if a.receipt != "" {
			w.Header().Set("Kho-Use-Receipt", a.receipt)
		}
		io.WriteString(w, a.body)
	}))
	defer proxy.Close()
	ts := &client.TokenSource{Agency: string(police.Agency), TokenURL: d.url + "/oauth/token", Audience: tokenIssuer + "/oauth/token", Key: sig}
	c := client.New(proxy.URL, ts, enc)
	other := strings.Split(strings.TrimSuffix(string(second), "\n"), "\n")
	split := func(a answer) []string { return strings.Split(strings.TrimSuffix(a.body, "\n"), "\n") }
	asStream := func(a answer, body string) answer { return answer{api.MediaTypeJWEStream, body, a.receipt} }
	for _, tc := range []struct {
		name   string
		mutate func(answer) answer
		fails  string
	}{
		{"intact", func(a answer) answer { return a }, ""},
		{"cut short", func(a answer) answer { return asStream(a, split(a)[0]+"\n") }, "ended before its last segment"},
		{"reordered", func(a answer) answer { g := split(a); return asStream(a, g[1]+"\n"+g[0]+"\n") }, "not a kho delivery"},
		{"spliced", func(a answer) answer { return asStream(a, split(a)[0]+"\n"+other[1]+"\n") }, "out of place"},
		{"extended", func(a answer) answer { return asStream(a, a.body+split(a)[1]+"\n") }, "goes on after its last segment"},
		{"forged content", func(a answer) answer { return asStream(a, forged) }, "not the document its issuer signed"},
		{"one JWE, read whole", func(a answer) answer { return answer{api.MediaTypeJOSE, string(oneJWE), a.receipt} }, "asked for an encrypted delivery"},
		{"plain text", func(a answer) answer { return answer{"text/plain", string(content), a.receipt} }, "asked for an encrypted delivery"},
		{"no use receipt", func(a answer) answer { return answer{a.typ, a.body, ""} }, "without a use receipt"},
		{"another fetch's receipt", func(a answer) answer { return answer{a.typ, a.body, secondReceipt} }, "for another fetch"},
		{"an earlier delivery replayed", func(answer) answer { return answer{api.MediaTypeJWEStream, string(first), receipt} }, "for another fetch"},
	} {
		mutate = tc.mutate
		var got bytes.Buffer
		_, err := c.Fetch(ctx, string(doc.ID), "CHC", &got)
		if tc.fails == "" {
			if err != nil || !bytes.Equal(got.Bytes(), content) {
				t.Fatalf("%s: %v (%d bytes)", tc.name, err, got.Len())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.fails) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.fails)
		}
	}
	// A genuine answer, on a clock ten minutes away from kho's.
	mutate = func(a answer) answer { return a }
	c.Now = func() time.Time { return time.Now().Add(client.ReceiptMaxAge + time.Minute) }
	if _, err := c.Fetch(ctx, string(doc.ID), "CHC", io.Discard); err == nil || !strings.Contains(err.Error(), "not for this fetch") {
		t.Errorf("a receipt signed long ago: %v", err)
	}
}

// segmentHeader decrypts one compact JWE and returns its protected header.
func segmentHeader(t *testing.T, compact string, key jwk.Key) map[string]any {
	t.Helper()
	m := jwe.NewMessage()
	if _, err := jwe.Decrypt([]byte(compact), jwe.WithKey(jwa.ECDH_ES_A256KW(), key), jwe.WithMessage(m)); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m.ProtectedHeaders())
	var h map[string]any
	_ = json.Unmarshal(b, &h)
	delete(h, "epk")
	delete(h, "enc")
	delete(h, "alg")
	return h
}

func encryptWith(t *testing.T, pub jwk.Key, plain []byte, fields map[string]any) []byte {
	t.Helper()
	h := jwe.NewHeaders()
	for k, v := range fields {
		_ = h.Set(k, v)
	}
	out, err := jwe.Encrypt(plain, jwe.WithKey(jwa.ECDH_ES_A256KW(), pub), jwe.WithContentEncryption(jwa.A256GCM()), jwe.WithProtectedHeaders(h), jwe.WithCompact())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Issuers' manifest keys are public, every version, and reading them never
// makes a key: an agency that never signed anything is 404 and still has
// no key in Vault afterwards.
func TestIssuerKeysArePublishedNotMade(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	doc := d.deposit(t, justice, textMeta, []byte("GIẤY KHAI SINH — khoá công khai"))
	resp, b := request(t, "GET", d.url+"/issuers/"+string(justice.Agency)+"/jwks.json", "", "", nil, nil)
	set, err := jwk.Parse(b)
	if resp.StatusCode != 200 || err != nil || set.Len() == 0 || resp.Header.Get("Cache-Control") != "public, max-age=10" {
		t.Fatalf("justice's keys: %d %v %s", resp.StatusCode, err, b)
	}
	k, _ := set.Key(0)
	if kid, _ := k.KeyID(); !strings.HasPrefix(kid, kho.AgencySigningKey(justice.Agency)+":") {
		t.Fatalf("kid %q", kid)
	}
	// The manifest a reader gets verifies with them, with jose.
	resp, _ = d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID)+"/content", "", nil, nil)
	out, err := joseVerify(t, []byte(resp.Header.Get("Kho-Manifest-Signature")), b, "")
	if err != nil || !strings.Contains(string(out), `"document_id":"`+string(doc.ID)+`"`) || !strings.Contains(string(out), `"issuer":"000.06.16.G09"`) {
		t.Fatalf("jose on the manifest: %v %s", err, out)
	}
	for path, want := range map[string]int{
		"/issuers/000.00.99.Z99/jwks.json": 404, "/issuers/not%20a%20code/jwks.json": 400, "/issuers/..%2F..%2Fsys/jwks.json": 404,
	} {
		if resp, b := request(t, "GET", d.url+path, "", "", nil, nil); resp.StatusCode != want {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	if set, err := d.docs.Keys.PublishedJWKS(ctx, kho.AgencySigningKey("000.00.99.Z99")); err == nil || set != nil {
		t.Fatal("reading an unknown issuer's keys made a key")
	}
}
