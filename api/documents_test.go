package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/minio/minio-go/v7"

	"kho"
	"kho/api"
	"kho/consent"
	"kho/internal/testenv"
	"kho/oauth"
	"kho/postgres"
	"kho/signing"
)

// docServer is khod's router over a real document service.
type docServer struct {
	url  string
	sign *signer
	docs *testenv.Documents
	srv  *api.Server
}

func newDocServer(t testing.TB, maxUpload int64) *docServer {
	t.Helper()
	return newDocServerWith(t, maxUpload, api.Limits{RequestsPerSecond: 1e6, Burst: 1e6})
}

// tokenIssuer is the iss of the access tokens the test server's token
// endpoint issues, and the base of the assertions' aud.
const tokenIssuer = "https://kho.test"

// newDocServerWith builds the server with the given limits (tests make many
// calls as one principal, faster than the default rate allows).
func newDocServerWith(t testing.TB, maxUpload int64, limits api.Limits) *docServer {
	t.Helper()
	s := newSigner(t)
	docs := testenv.NewDocuments(t)
	receiptSigner, err := signing.New(signing.Config{DB: docs.DB, Keys: docs.Keys})
	if err != nil {
		t.Fatal(err)
	}
	// kho's own token endpoint for agencies' systems, and its tokens
	// trusted beside the test identity provider's.
	tokens, err := oauth.New(oauth.Config{DB: docs.DB, Signer: docs.Keys, Key: oauth.KeyName, Issuer: tokenIssuer,
		Audiences: []string{tokenIssuer + "/oauth/token"}, TokenAudience: "kho"})
	if err != nil {
		t.Fatal(err)
	}
	tokenKeys, err := docs.Keys.JWKS(testenv.Context(t), oauth.KeyName)
	if err != nil {
		t.Fatal(err)
	}
	authn, err := api.NewAuthenticator(context.Background(), "kho", []api.IssuerConfig{{Issuer: testIssuer, KeySet: s.set, Kinds: kho.PrincipalKinds},
		{Issuer: tokenIssuer, KeySet: tokenKeys, Kinds: []kho.PrincipalKind{kho.PrincipalAgency}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{
		Logger: slog.New(slog.DiscardHandler), Authenticator: authn, Documents: docs.Svc, Audit: docs.Log, MaxUploadSize: maxUpload,
		Tokens: tokens, Idempotency: &postgres.Idempotency{DB: docs.DB}, DevJWKS: s.set,
		EncryptionKeys: func(ctx context.Context, a kho.AgencyCode) (jwk.Set, error) {
			return oauth.Keys(ctx, docs.DB, a, "enc")
		},
		Limits:   limits,
		Consents: docs.Consents, ReceiptKeys: func(ctx context.Context) (jwk.Set, error) { return docs.Keys.JWKS(ctx, consent.ReceiptKey) },
		PKIFiles: docs.Keys.PKIFile, SigningKeys: docs.Keys.PublishedJWKS,
		SignReceiptPDF: func(ctx context.Context, pdf []byte) ([]byte, error) {
			return receiptSigner.Sign(ctx, pdf, signing.Options{Service: &signing.Service{Key: consent.ReceiptKey, Name: "kho (test deployment)"}})
		},
		PDFVerifier: func(ctx context.Context, pdf []byte) (*signing.Report, error) {
			root, err := docs.Keys.RootCertificate(ctx)
			if err != nil {
				return nil, err
			}
			return signing.Verify(pdf, root)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &docServer{url: ts.URL, sign: s, docs: docs, srv: srv}
}

// token mints a bearer token for p.
func (d *docServer) token(t testing.TB, p kho.Principal) string {
	c := claims()
	c[kho.ClaimKind] = string(p.Kind)
	delete(c, kho.ClaimAgency)
	switch p.Kind {
	case kho.PrincipalCitizen:
		c["sub"] = string(p.Person)
	case kho.PrincipalBusinessRep:
		c["sub"], c[kho.ClaimBusiness] = string(p.Person), string(p.Business)
	case kho.PrincipalAgency:
		c["sub"], c[kho.ClaimAgency] = string(p.Agency), string(p.Agency)
	case kho.PrincipalAgencyOfficer:
		c["sub"], c[kho.ClaimAgency] = string(p.Staff), string(p.Agency)
	default:
		c["sub"] = string(p.Staff)
	}
	c["jti"] = uuid.NewString()
	return d.sign.sign(t, c)
}

var (
	citizen  = kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001"}
	stranger = kho.Principal{Kind: kho.PrincipalCitizen, Person: "079085000002"}
	justice  = kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.06.16.G09"}
	police   = kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.00.15.H29"}
)

func multipartBody(t testing.TB, meta string, file []byte, order ...string) (string, *bytes.Buffer) {
	t.Helper()
	if len(order) == 0 {
		order = []string{"metadata", "file"}
	}
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, name := range order {
		var part io.Writer
		var err error
		if name == "file" {
			part, err = w.CreateFormFile("file", "upload.bin")
		} else {
			part, err = w.CreateFormField(name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if name == "file" {
			part.Write(file)
		} else {
			part.Write([]byte(meta))
		}
	}
	w.Close()
	return w.FormDataContentType(), &b
}

func (d *docServer) call(t *testing.T, p kho.Principal, method, path, contentType string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	return request(t, method, d.url+path, d.token(t, p), contentType, body, hdr)
}

func (d *docServer) deposit(t *testing.T, p kho.Principal, meta string, file []byte) kho.Document {
	t.Helper()
	ct, body := multipartBody(t, meta, file)
	resp, b := d.call(t, p, "POST", "/v1/documents", ct, body, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("deposit: %d %s", resp.StatusCode, b)
	}
	var doc kho.Document
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Location") != "/v1/documents/"+string(doc.ID) {
		t.Fatalf("Location: %q", resp.Header.Get("Location"))
	}
	return doc
}

const textMeta = `{"subject_id":"001090000001","type":"GKS","name":"Giấy khai sinh","issued_on":"2024-01-15","media_type":"text/plain"}`

func TestDepositAndDownloadOverHTTP(t *testing.T) {
	d := newDocServer(t, 0)
	body := bytes.Repeat([]byte("0123456789abcdef"), 10_000) // 160 000 bytes, three age chunks
	doc := d.deposit(t, justice, textMeta, body)

	resp, got := d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID)+"/content", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(got))
	}
	for k, want := range map[string]string{
		"Content-Type": "text/plain", "Content-Length": "160000", "Accept-Ranges": "bytes",
		"ETag": `"sha256:` + doc.SHA256 + `"`, "X-Content-Type-Options": "nosniff",
	} {
		if resp.Header.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, resp.Header.Get(k), want)
		}
	}
	if !strings.HasPrefix(resp.Header.Get("Repr-Digest"), "sha-256=:") {
		t.Errorf("Repr-Digest = %q", resp.Header.Get("Repr-Digest"))
	}

	ranges := []struct {
		header, contentRange string
		want                 []byte
	}{
		{"bytes=0-9", "bytes 0-9/160000", body[:10]},
		{"bytes=65530-65545", "bytes 65530-65545/160000", body[65530:65546]},
		{"bytes=159990-", "bytes 159990-159999/160000", body[159990:]},
		{"bytes=-5", "bytes 159995-159999/160000", body[159995:]},
	}
	for _, r := range ranges {
		resp, got := d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID)+"/content", "", nil, map[string]string{"Range": r.header})
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != r.contentRange || !bytes.Equal(got, r.want) {
			t.Errorf("%s: %d %q %q", r.header, resp.StatusCode, resp.Header.Get("Content-Range"), got)
		}
	}
	resp, _ = d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID)+"/content", "", nil, map[string]string{"Range": "bytes=200000-"})
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != "bytes */160000" {
		t.Errorf("unsatisfiable range: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}

	// The verification report and the metadata.
	resp, b := d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID)+"/verification", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"valid":true`)) {
		t.Fatalf("verification: %d %s", resp.StatusCode, b)
	}
	resp, b = d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID), "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"status":"valid"`)) {
		t.Fatalf("metadata: %d %s", resp.StatusCode, b)
	}
	// The owner lists their own store.
	resp, b = d.call(t, citizen, "GET", "/v1/me/documents", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(string(doc.ID))) {
		t.Fatalf("my documents: %d %s", resp.StatusCode, b)
	}
}

// A tampered object breaks the transfer: the client never receives a
// complete-looking response.
func TestTamperedObjectAbortsTheDownload(t *testing.T) {
	d := newDocServer(t, 0)
	body := bytes.Repeat([]byte("x"), 300_000)
	doc := d.deposit(t, justice, textMeta, body)
	ctx := testenv.Context(t)
	var object string
	if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT object_name FROM documents WHERE id = $1`, doc.ID).Scan(&object); err != nil {
		t.Fatal(err)
	}
	s3 := testenv.MinIORoot(t).S3()
	bucket := d.docs.Blobs.Bucket()
	obj, err := s3.GetObject(ctx, bucket, object, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(obj)
	obj.Close()
	raw[len(raw)-1000] ^= 0x40 // in the last chunk
	if _, err := s3.PutObject(ctx, bucket, object, bytes.NewReader(raw), int64(len(raw)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", d.url+"/v1/documents/"+string(doc.ID)+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+d.token(t, citizen))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("transfer of a tampered object completed (%d bytes, status %d)", len(got), resp.StatusCode)
	}
	if !bytes.Equal(got, body[:len(got)]) {
		t.Fatal("altered bytes were sent")
	}
}

func TestDocumentRoutesRefuseWrongPrincipalsAndBadInput(t *testing.T) {
	d := newDocServer(t, 64<<10)
	doc := d.deposit(t, justice, textMeta, []byte("only for the owner and the issuer"))
	id := string(doc.ID)
	ct, body := multipartBody(t, strings.Replace(textMeta, `"subject_id":"001090000001",`, "", 1), []byte("new version"))
	revoke := `{"reason":"wrong data"}`
	type call struct {
		name        string
		p           kho.Principal
		method      string
		path        string
		contentType string
		body        string
		status      int
	}
	calls := []call{
		{"fail/stranger reads metadata", stranger, "GET", "/v1/documents/" + id, "", "", 404},
		{"fail/stranger downloads", stranger, "GET", "/v1/documents/" + id + "/content", "", "", 404},
		{"fail/stranger downloads a range", stranger, "GET", "/v1/documents/" + id + "/content", "", "", 404},
		{"fail/stranger verifies", stranger, "GET", "/v1/documents/" + id + "/verification", "", "", 404},
		{"fail/other agency downloads", police, "GET", "/v1/documents/" + id + "/content", "", "", 404},
		{"fail/other agency revokes", police, "POST", "/v1/documents/" + id + "/revocation", "application/json", revoke, 404},
		{"fail/owner revokes an agency's document", citizen, "POST", "/v1/documents/" + id + "/revocation", "application/json", revoke, 403},
		{"fail/other agency supersedes", police, "POST", "/v1/documents/" + id + "/versions", ct, body.String(), 404},
		{"fail/stranger lists the store", stranger, "GET", "/v1/subjects/" + string(doc.Subject) + "/documents", "", "", 404},
		{"fail/stranger erases the store", stranger, "POST", "/v1/subjects/" + string(doc.Subject) + "/erasure", "", "", 404},
		{"fail/citizen places a legal hold", citizen, "POST", "/v1/subjects/" + string(doc.Subject) + "/legal-holds", "application/json", `{"legal_basis":"QĐ 9/QĐ","until":"2099-01-01"}`, 403},
		{"fail/stranger resolves another's store", stranger, "POST", "/v1/subjects/resolve", "application/json", `{"subject_id":"001090000001"}`, 404},
		{"fail/malformed document id", citizen, "GET", "/v1/documents/not-a-uuid", "", "", 404},
		{"fail/revocation without json", justice, "POST", "/v1/documents/" + id + "/revocation", "text/plain", "wrong", 400},
		{"fail/revocation with unknown field", justice, "POST", "/v1/documents/" + id + "/revocation", "application/json", `{"reason":"x y z","why":1}`, 400},
		{"fail/deposit not multipart", justice, "POST", "/v1/documents", "application/json", `{}`, 400},
		{"fail/bad limit", citizen, "GET", "/v1/me/documents?limit=abc", "", "", 400},
		{"fail/security officer has no store", kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}, "GET", "/v1/me/documents", "", "", 403},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			var hdr map[string]string
			if strings.Contains(c.name, "range") {
				hdr = map[string]string{"Range": "bytes=0-3"}
			}
			var rb io.Reader
			if c.body != "" {
				rb = strings.NewReader(c.body)
			}
			resp, b := d.call(t, c.p, c.method, c.path, c.contentType, rb, hdr)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
			}
			if bytes.Contains(b, []byte("only for the owner")) {
				t.Fatal("content leaked in an error")
			}
		})
	}

	uploads := []struct {
		name   string
		order  []string
		meta   string
		file   []byte
		status int
	}{
		{"fail/file before metadata", []string{"file", "metadata"}, textMeta, []byte("x"), 400},
		{"fail/metadata only", []string{"metadata"}, textMeta, nil, 400},
		{"fail/bad metadata", nil, `{"type":"GKS"}`, []byte("x"), 400},
		{"fail/content does not match type", nil, strings.Replace(textMeta, "text/plain", "application/pdf", 1), []byte("not a pdf"), 400},
		{"fail/over the upload limit", nil, textMeta, bytes.Repeat([]byte("a"), 100<<10), 413},
	}
	for _, u := range uploads {
		t.Run(u.name, func(t *testing.T) {
			ct, body := multipartBody(t, u.meta, u.file, u.order...)
			resp, b := d.call(t, justice, "POST", "/v1/documents", ct, body, nil)
			if resp.StatusCode != u.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, u.status, b)
			}
		})
	}

	// The issuer revokes; the owner still sees it, revoked, with the reason.
	resp, b := d.call(t, justice, "POST", "/v1/documents/"+id+"/revocation", "application/json", strings.NewReader(revoke), nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"status":"revoked"`)) {
		t.Fatalf("revoke: %d %s", resp.StatusCode, b)
	}
	// A legal hold by an agency, then the owner's erasure is refused with 409.
	resp, b = d.call(t, police, "POST", "/v1/subjects/"+string(doc.Subject)+"/legal-holds", "application/json",
		strings.NewReader(`{"legal_basis":"Quyết định 7/QĐ-CA (mẫu)","reason":"điều tra / investigation","until":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("legal hold: %d %s", resp.StatusCode, b)
	}
	var hold struct{ ID string }
	_ = json.Unmarshal(b, &hold)
	resp, b = d.call(t, citizen, "POST", "/v1/subjects/"+string(doc.Subject)+"/erasure", "", nil, nil)
	if resp.StatusCode != 409 || !bytes.Contains(b, []byte("legal hold")) {
		t.Fatalf("erasure under hold: %d %s", resp.StatusCode, b)
	}
	// Only the agency that placed the hold releases it; then erasure goes ahead.
	release := "/v1/subjects/" + string(doc.Subject) + "/legal-holds/" + hold.ID + "/release"
	if resp, b = d.call(t, justice, "POST", release, "", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("release by another agency: %d %s", resp.StatusCode, b)
	}
	if resp, b = d.call(t, police, "POST", release, "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("release: %d %s", resp.StatusCode, b)
	}
	if resp, b = d.call(t, police, "POST", release, "", nil, nil); resp.StatusCode != 409 {
		t.Fatalf("release twice: %d %s", resp.StatusCode, b)
	}
	if resp, b = d.call(t, citizen, "POST", "/v1/subjects/"+string(doc.Subject)+"/erasure", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("erasure after release: %d %s", resp.StatusCode, b)
	}
}

// A PDF an agency deposits comes back signed, and the verification route
// reports the agency's valid, trusted signature; a changed byte is reported.
func TestPDFSignatureVerificationRoute(t *testing.T) {
	d := newDocServer(t, 0)
	pdfMeta := strings.Replace(textMeta, "text/plain", "application/pdf", 1)
	doc := d.deposit(t, justice, pdfMeta, testenv.PDF("kết quả / result"))
	resp, signed := d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID)+"/content", "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	resp, b := d.call(t, citizen, "POST", "/v1/pdf-signatures/verification", "application/pdf", bytes.NewReader(signed), nil)
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"valid":true`)) || !bytes.Contains(b, []byte(`"chain_trusted":true`)) ||
		!bytes.Contains(b, []byte("000.06.16.G09")) {
		t.Fatalf("verification: %d %s", resp.StatusCode, b)
	}
	bad := bytes.Clone(signed)
	bad[20] ^= 1
	resp, b = d.call(t, citizen, "POST", "/v1/pdf-signatures/verification", "application/pdf", bytes.NewReader(bad), nil)
	if resp.StatusCode != 200 || bytes.Contains(b, []byte(`"valid":true`)) {
		t.Fatalf("verification of a changed file: %d %s", resp.StatusCode, b)
	}
	resp, _ = d.call(t, citizen, "POST", "/v1/pdf-signatures/verification", "application/pdf", strings.NewReader("not a pdf"), nil)
	if resp.StatusCode != 400 {
		t.Fatalf("a non-PDF: %d", resp.StatusCode)
	}
}

// A deposit refused before its document is read is answered after the
// rest of the body is read, so the client gets the answer (not a reset)
// and the connection stays usable (without the drain, Go's server answers
// "Connection: close" and closes with the body unread).
func TestRefusedDepositIsDrainedFirst(t *testing.T) {
	d := newDocServer(t, 0)
	u, _ := url.Parse(d.url)
	// The police may not issue birth certificates: refused once the
	// metadata is read, before the 6 MiB document.
	ct, body := multipartBody(t, textMeta, bytes.Repeat([]byte("x"), 6<<20))
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(req *http.Request) *http.Response {
		t.Helper()
		errc := make(chan error, 1)
		go func() { errc <- req.Write(conn) }()
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err := <-errc; err != nil {
			t.Fatalf("the request could not be sent whole: %v", err)
		}
		return resp
	}
	req, _ := http.NewRequest("POST", d.url+"/v1/documents", bytes.NewReader(body.Bytes()))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+d.token(t, police))
	if resp := send(req); resp.StatusCode != http.StatusForbidden || resp.Close {
		t.Fatalf("refused deposit: %d, connection closed: %v", resp.StatusCode, resp.Close)
	}
	// The same connection serves the next request.
	req2, _ := http.NewRequest("GET", d.url+"/healthz", nil)
	if resp := send(req2); resp.StatusCode != http.StatusOK {
		t.Fatalf("next request on the connection: %d", resp.StatusCode)
	}
	// With an Idempotency-Key, from a client that stops sending after the
	// metadata: the refusal still comes once the drain's time is up, not
	// when the client sends the rest (or never).
	pr, pw := io.Pipe()
	defer pw.Close()
	raw := body.Bytes()
	go pw.Write(raw[:len(raw)-(6<<20)+(1<<20)]) // the metadata and 1 MiB of the file, then nothing
	req3, _ := http.NewRequest("POST", d.url+"/v1/documents", pr)
	req3.ContentLength = int64(len(raw))
	req3.Header.Set("Content-Type", ct)
	req3.Header.Set("Authorization", "Bearer "+d.token(t, police))
	req3.Header.Set("Idempotency-Key", "refused-and-stalled")
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultTransport.RoundTrip(req3)
		if err != nil {
			t.Errorf("refused deposit with a key: %v", err)
			got <- nil
			return
		}
		resp.Body.Close()
		got <- resp
	}()
	select {
	case resp := <-got:
		if resp != nil && resp.StatusCode != http.StatusForbidden {
			t.Fatalf("refused deposit with a key: %d", resp.StatusCode)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a refusal waited for a body the client never sent")
	}
}
