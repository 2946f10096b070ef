package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"kho"
	"kho/api"
	"kho/client"
	"kho/internal/testenv"
	"kho/oauth"
	"kho/postgres"
)

// A client that lost its answer retries with the same Idempotency-Key: 20
// concurrent retries of one deposit create exactly one document, and every
// retry learns its id.
func TestConcurrentRetriesOfOneDepositCreateOneDocument(t *testing.T) {
	d := newDocServer(t, 0)
	ct, body := multipartBody(t, textMeta, bytes.Repeat([]byte("giấy khai sinh "), 5000))
	raw := body.Bytes()
	const retries = 20
	ids := make([]string, retries)
	replayed := make([]bool, retries)
	var wg sync.WaitGroup
	for i := range retries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A client retries while the first is at work (409), for as
			// long as a slow machine may take to do it.
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
				resp, b := d.call(t, justice, "POST", "/v1/documents", ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": "deposit-0001"})
				switch resp.StatusCode {
				case 201:
					var doc kho.Document
					_ = json.Unmarshal(b, &doc)
					ids[i], replayed[i] = string(doc.ID), resp.Header.Get("Idempotent-Replayed") == "true"
					return
				case 409:
					time.Sleep(20 * time.Millisecond)
				default:
					t.Errorf("retry %d: %d %s", i, resp.StatusCode, b)
					return
				}
			}
			t.Errorf("retry %d never got an answer", i)
		}()
	}
	wg.Wait()
	firsts := 0
	for i := range retries {
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("retries got documents %v", ids)
		}
		if !replayed[i] {
			firsts++
		}
	}
	if firsts != 1 {
		t.Fatalf("%d answers were not replays, want 1", firsts)
	}
	var n int
	if err := d.docs.DB.Pool.QueryRow(testenv.Context(t), `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d documents stored (%v), want 1", n, err)
	}
	// The same key for another body, or another route, is a mistake.
	ct2, other := multipartBody(t, textMeta, []byte("another document"))
	if resp, b := d.call(t, justice, "POST", "/v1/documents", ct2, other, map[string]string{"Idempotency-Key": "deposit-0001"}); resp.StatusCode != 422 {
		t.Fatalf("same key, other body: %d %s", resp.StatusCode, b)
	}
	if resp, b := d.call(t, justice, "POST", "/v1/consent-requests", "application/json", strings.NewReader(`{}`), map[string]string{"Idempotency-Key": "deposit-0001"}); resp.StatusCode != 422 {
		t.Fatalf("same key, other route: %d %s", resp.StatusCode, b)
	}
	// Keys are each caller's own: the police's deposit-0001 is another key.
	if resp, b := d.call(t, police, "POST", "/v1/documents", ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": "deposit-0001"}); resp.StatusCode == 201 || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("another caller replayed the justice office's answer: %d %s", resp.StatusCode, b)
	}
	// A key that is not a visible ASCII token is refused.
	if resp, _ := d.call(t, justice, "POST", "/v1/documents", ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": "khóa có dấu"}); resp.StatusCode != 400 {
		t.Fatalf("non-ASCII key: %d", resp.StatusCode)
	}
	// Two keys on one request: which one was meant is not guessed.
	resp, b, err := d.rawDeposit(t, http.DefaultClient, ct, raw, http.Header{"Idempotency-Key": {"deposit-0001", "deposit-0002"}})
	if err != nil || resp.StatusCode != 400 || !strings.Contains(string(b), "one Idempotency-Key") {
		t.Fatalf("two keys: %v %s", err, b)
	}
	// An empty key is no key: refused, alone or before another.
	for _, keys := range [][]string{{""}, {"", "deposit-0003"}} {
		if resp, b, err := d.rawDeposit(t, http.DefaultClient, ct, raw, http.Header{"Idempotency-Key": keys}); err != nil || resp.StatusCode != 400 {
			t.Fatalf("keys %q: %v %s, want 400", keys, err, b)
		}
	}
	// A path no resource can have (NUL, bytes that are not UTF-8) is the
	// caller's error, not an outage of the database that keeps the keys.
	for _, path := range []string{"/v1/documents/%00/versions", "/v1/consent-requests/%ff/approval"} {
		resp, b := d.call(t, justice, "POST", path, ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": "bad-path"})
		if resp.StatusCode != 400 || !strings.Contains(string(b), "valid UTF-8") {
			t.Fatalf("%s with a key: %d %s", path, resp.StatusCode, b)
		}
	}
}

// Consent writes take keys too: an approval retried is approved once.
func TestRetriedConsentGrantIsOneConsent(t *testing.T) {
	d := newDocServer(t, 0)
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	body := `{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"` + until + `","mode":"once","data_life_days":30}`
	var first string
	for i := range 3 {
		resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(body), map[string]string{"Idempotency-Key": "grant-1"})
		var c struct{ ID string }
		_ = json.Unmarshal(b, &c)
		if resp.StatusCode != 201 || (i > 0 && (c.ID != first || resp.Header.Get("Idempotent-Replayed") != "true")) {
			t.Fatalf("grant %d: %d %s", i, resp.StatusCode, b)
		}
		if i == 0 {
			first = c.ID
		}
	}
	var n int
	if err := d.docs.DB.Pool.QueryRow(testenv.Context(t), `SELECT count(*) FROM consents`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d consents (%v), want 1", n, err)
	}
	// A retry is read no further than a JSON body may be long.
	resp, b := d.call(t, citizen, "POST", "/v1/me/consents", "application/json", strings.NewReader(body+strings.Repeat(" ", 1<<20)), map[string]string{"Idempotency-Key": "grant-1"})
	if resp.StatusCode != 413 {
		t.Fatalf("a retry with 1 MiB more: %d %s, want 413", resp.StatusCode, b)
	}
}

// A key claimed by a request whose khod died (no more heartbeats) is taken
// over by a retry within a minute, not after the request's longest
// transfer; a request at work keeps its key by its heartbeats.
func TestAbandonedIdempotencyKeyIsTakenOver(t *testing.T) {
	db := testenv.DB(t, true)
	ctx := testenv.Context(t)
	idem := &postgres.Idempotency{DB: db}
	const owner, key = "agency:G09", "k-1"
	begin := func() *postgres.Idempotent {
		t.Helper()
		r, err := idem.Begin(ctx, owner, key, "POST /v1/documents")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	age := func(d time.Duration) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $1)`, d.Seconds()); err != nil {
			t.Fatal(err)
		}
	}
	first := begin()
	if !first.Fresh || first.Claim == "" {
		t.Fatalf("first claim: %+v", first)
	}
	if r := begin(); r.Fresh || !r.Pending {
		t.Fatalf("a key at work was taken: %+v", r)
	}
	age(postgres.HeartbeatEvery * 2)
	if err := idem.Heartbeat(ctx, owner, key, first.Claim); err != nil {
		t.Fatal(err)
	}
	if r := begin(); r.Fresh {
		t.Fatal("a key whose request beats was taken over")
	}
	age(postgres.DefaultAbandoned + time.Second)
	second := begin()
	if !second.Fresh || second.Claim == first.Claim {
		t.Fatalf("a key with no heartbeat for longer than DefaultAbandoned was not taken over: %+v", second)
	}
	// The first request, still alive after all, can neither renew, nor
	// complete, nor release the claim the retry now holds.
	_ = idem.Heartbeat(ctx, owner, key, first.Claim)
	if err := idem.Complete(ctx, owner, key, first.Claim, []byte("h"), 0, 201, "application/json", "", []byte("{}")); err != postgres.ErrClaimLost {
		t.Fatalf("completing a lost claim: %v", err)
	}
	if err := idem.Release(ctx, owner, key, first.Claim); err != nil {
		t.Fatal(err)
	}
	if r := begin(); r.Fresh || !r.Pending {
		t.Fatalf("the retry's claim was disturbed by the first request: %+v", r)
	}
	if err := idem.Complete(ctx, owner, key, second.Claim, []byte("h"), 0, 201, "application/json", "/v1/documents/x", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if r := begin(); r.Fresh || r.Pending || r.Status != 201 || r.Location != "/v1/documents/x" {
		t.Fatalf("the retry's answer is not kept: %+v", r)
	}
}

// panickingDocuments fails every deposit with a panic, as a bug would.
type panickingDocuments struct{ api.Documents }

func (panickingDocuments) Deposit(context.Context, kho.Principal, *kho.DepositMetadata, io.Reader) (*kho.Document, error) {
	panic("a bug in the deposit")
}

// A handler that panics gives its claim back: the retry is not refused as
// "still at work" for as long as khod runs.
func TestPanicReleasesTheIdempotencyClaim(t *testing.T) {
	s := newSigner(t)
	db := testenv.DB(t, true)
	srv, err := api.New(api.Config{
		Logger: slog.New(slog.DiscardHandler), Authenticator: newAuth(t, s), Documents: panickingDocuments{},
		Audit: &recordingAudit{}, Consents: noConsents{}, ReceiptKeys: noKeys, Idempotency: &postgres.Idempotency{DB: db},
		Limits: api.Limits{RequestsPerSecond: 1e6, Burst: 1e6},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := claims()
	c[kho.ClaimKind], c["sub"], c[kho.ClaimAgency] = string(kho.PrincipalAgency), "000.06.16.G09", "000.06.16.G09"
	tok := s.sign(t, c)
	ct, body := multipartBody(t, textMeta, []byte("giấy khai sinh"))
	raw := body.Bytes()
	for i := 0; i < 2; i++ {
		resp, b := request(t, "POST", ts.URL+"/v1/documents", tok, ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": "after-a-panic"})
		if resp.StatusCode != 500 {
			t.Fatalf("attempt %d: %d %s, want the 500 of a panic (not 409: the claim must not stay)", i, resp.StatusCode, b)
		}
	}
}

// rawDeposit sends raw as the justice office's deposit with the headers of
// hdr as they are (a key repeated or empty), through client.
func (d *docServer) rawDeposit(t *testing.T, client *http.Client, ct string, raw []byte, hdr http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest("POST", d.url+"/v1/documents", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr.Clone()
	req.Header.Set("Authorization", "Bearer "+d.token(t, justice))
	req.Header.Set("Content-Type", ct)
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// dieUnanswered leaves key as a khod killed between committing its work and
// storing its answer does: pending, its heartbeats stopped long ago.
func dieUnanswered(t *testing.T, d *docServer, key string) {
	t.Helper()
	if _, err := d.docs.DB.Pool.Exec(testenv.Context(t), `UPDATE idempotency_keys SET state = 'pending', request_hash = NULL, request_len = NULL, status = NULL,
		content_type = NULL, location = NULL, body = NULL, created_at = now() - interval '10 minutes' WHERE key = $1`, key); err != nil {
		t.Fatal(err)
	}
}

// A deposit reads its body up to the end of its file part (and what its
// reader took ahead, at most 64 KiB more), and its retries are compared
// over that much: what follows (an epilogue, however long) is neither a
// different request nor a way to make one pass for the first.
func TestDepositRetryIsComparedUpToItsFilePart(t *testing.T) {
	d := newDocServer(t, 0)
	ct, body := multipartBody(t, textMeta, []byte("giấy khai sinh"))
	raw := body.Bytes()
	padded := append(bytes.Clone(raw), bytes.Repeat([]byte("phần kết "), 1<<20)...) // 10 MiB after the closing delimiter
	ct2, other := multipartBody(t, textMeta, []byte("một giấy tờ khác"))
	deposit := func(key string, b []byte, ct string) (int, kho.Document, bool) {
		t.Helper()
		resp, out := d.call(t, justice, "POST", "/v1/documents", ct, bytes.NewReader(b), map[string]string{"Idempotency-Key": key})
		var doc kho.Document
		_ = json.Unmarshal(out, &doc)
		return resp.StatusCode, doc, resp.Header.Get("Idempotent-Replayed") == "true"
	}
	// More after the document than is ever read, then another document
	// under the key: 422, not the first's answer.
	st, first, _ := deposit("padded", padded, ct)
	if st != 201 {
		t.Fatalf("deposit with a long epilogue: %d", st)
	}
	if st, _, _ := deposit("padded", other.Bytes(), ct2); st != 422 {
		t.Fatalf("another document under the key of one sent with a long epilogue: %d, want 422", st)
	}
	retail := append(bytes.Clone(padded[:len(padded)-1<<20]), bytes.Repeat([]byte("x"), 1<<20)...)
	for _, b := range [][]byte{padded, retail} {
		if st, doc, replayed := deposit("padded", b, ct); st != 201 || doc.ID != first.ID || !replayed {
			t.Fatalf("the same deposit, %d bytes: %d %s replayed=%v, want 201 with %s", len(b), st, doc.ID, replayed, first.ID)
		}
	}
	// After a khod died unanswered, a retry with an epilogue is answered
	// from the committed deposit, and the genuine retry still is after it.
	st, first, _ = deposit("epilogue", raw, ct)
	if st != 201 {
		t.Fatalf("deposit: %d", st)
	}
	dieUnanswered(t, d, "epilogue")
	for i, b := range [][]byte{append(bytes.Clone(raw), "phần kết"...), raw} {
		if st, doc, replayed := deposit("epilogue", b, ct); st != 201 || doc.ID != first.ID || !replayed {
			t.Fatalf("retry %d: %d %s replayed=%v, want 201 with %s", i, st, doc.ID, replayed, first.ID)
		}
	}
	// The same bytes read with another boundary, or as another type, are
	// not the deposit (before a khod died and after).
	for _, died := range []bool{false, true} {
		if died {
			dieUnanswered(t, d, "epilogue")
		}
		for _, other := range []string{"multipart/form-data; boundary=another", "application/json"} {
			if st, _, _ := deposit("epilogue", raw, other); st != 422 {
				t.Fatalf("the deposit's bytes as %s (died %v): %d, want 422", other, died, st)
			}
		}
		if st, doc, replayed := deposit("epilogue", raw, ct); st != 201 || doc.ID != first.ID || !replayed {
			t.Fatalf("the deposit again (died %v): %d %s replayed=%v", died, st, doc.ID, replayed)
		}
	}
	// A boundary that must be quoted, sent unquoted, is no deposit: it is
	// not the one sent quoted.
	var quoted bytes.Buffer
	mw := multipart.NewWriter(&quoted)
	if err := mw.SetBoundary("a b"); err != nil {
		t.Fatal(err)
	}
	if err := mw.WriteField("metadata", textMeta); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", "upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("giấy khai sinh"))
	mw.Close()
	if st, _, _ := deposit("quoted", quoted.Bytes(), mw.FormDataContentType()); st != 201 {
		t.Fatalf("deposit with a quoted boundary: %d", st)
	}
	if st, _, _ := deposit("quoted", quoted.Bytes(), "multipart/form-data; boundary=a b"); st != 422 {
		t.Fatalf("its bytes under the boundary unquoted: %d, want 422", st)
	}
	// A client that waits to be told to continue, and is (its body is
	// compared), gets its answer whole, not a reset over the epilogue the
	// comparison leaves unread.
	long := append(bytes.Clone(raw), bytes.Repeat([]byte("phần kết "), 400<<10)...) // 4 MiB
	if st, _, _ := deposit("expect", long, ct); st != 201 {
		t.Fatalf("deposit: %d", st)
	}
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	for i := range 5 {
		resp, _, err := d.rawDeposit(t, client, ct, long, http.Header{"Idempotency-Key": {"expect"}, "Expect": {"100-continue"}})
		if err != nil {
			t.Fatalf("replay %d with Expect: 100-continue: %v", i, err)
		}
		if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay %d with Expect: 100-continue: %d", i, resp.StatusCode)
		}
	}
	var n int
	if err := d.docs.DB.Pool.QueryRow(testenv.Context(t), `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d documents for four deposits (%v)", n, err)
	}
}

// A khod that died after its deposit committed and before it stored the
// answer leaves the claim pending, its heartbeats stopped, with the
// document's id recorded in the deposit's own transaction. The client's
// retry under the same key takes the claim over and is answered with that
// document: no second one.
func TestDepositCommittedBeforeItsAnswerIsNotDoneTwice(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	ct, body := multipartBody(t, textMeta, []byte("giấy khai sinh, gửi lại sau khi khod chết"))
	raw := body.Bytes()
	const key = "deposit-died-unanswered"
	resp, b := d.call(t, justice, "POST", "/v1/documents", ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": key})
	if resp.StatusCode != 201 {
		t.Fatalf("deposit: %d %s", resp.StatusCode, b)
	}
	var first kho.Document
	_ = json.Unmarshal(b, &first)
	var result string
	if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT coalesce(result, '') FROM idempotency_keys WHERE key = $1`, key).Scan(&result); err != nil || result != string(first.ID) {
		t.Fatalf("the deposit's transaction recorded %q under its key (%v), want %s", result, err, first.ID)
	}
	// What a khod killed between the commit and storing its answer leaves.
	dieUnanswered(t, d, key)
	// A retry under the key with another document is another request:
	// 422, and the committed result stays for the real retry.
	ct2, other := multipartBody(t, textMeta, []byte("một giấy tờ khác"))
	resp, b = d.call(t, justice, "POST", "/v1/documents", ct2, other, map[string]string{"Idempotency-Key": key})
	if resp.StatusCode != 422 {
		t.Fatalf("another body under the key of a committed deposit: %d %s, want 422", resp.StatusCode, b)
	}
	// A retry that cannot be answered now (the lookup of the committed
	// document fails, as it would in a database blip; here the recorded id
	// is made unfindable for a moment) leaves the result for the next.
	if _, err := d.docs.DB.Pool.Exec(ctx, `UPDATE idempotency_keys SET result = '01a206c5-f13c-7992-989b-000000000000' WHERE key = $1`, key); err != nil {
		t.Fatal(err)
	}
	if resp, b = d.call(t, justice, "POST", "/v1/documents", ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": key}); resp.StatusCode/100 == 2 || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("answered %d %s (replayed %q) from a document that does not exist", resp.StatusCode, b, resp.Header.Get("Idempotent-Replayed"))
	}
	if _, err := d.docs.DB.Pool.Exec(ctx, `UPDATE idempotency_keys SET result = $2 WHERE key = $1`, key, string(first.ID)); err != nil {
		t.Fatal(err)
	}
	var kept int
	if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE key = $1 AND state = 'pending'`, key).Scan(&kept); err != nil || kept != 1 {
		t.Fatalf("a failed answer from a committed result dropped the key (%d rows, %v): the next retry would deposit again", kept, err)
	}
	resp, b = d.call(t, justice, "POST", "/v1/documents", ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": key})
	var again kho.Document
	_ = json.Unmarshal(b, &again)
	if resp.StatusCode != 201 || again.ID != first.ID || again.SHA256 != first.SHA256 || resp.Header.Get("Location") != "/v1/documents/"+string(first.ID) {
		t.Fatalf("the retry: %d %s, want 201 with document %s", resp.StatusCode, b, first.ID)
	}
	var n int
	if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d documents after a deposit and its retry (%v)", n, err)
	}
	// And the answer is kept now, as for any completed key.
	resp, b = d.call(t, justice, "POST", "/v1/documents", ct, bytes.NewReader(raw), map[string]string{"Idempotency-Key": key})
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a third try: %d %s", resp.StatusCode, b)
	}
}

// A deposit whose claim a retry took over while it worked (its heartbeats
// had stopped) cannot commit: the retry's document is the only one.
func TestDepositWhoseClaimWasTakenOverDoesNotCommit(t *testing.T) {
	docs := testenv.NewDocuments(t)
	ctx := testenv.Context(t)
	idem := &postgres.Idempotency{DB: docs.DB}
	first, err := idem.Begin(ctx, "agency:G09", "k-taken", "POST /v1/documents")
	if err != nil || !first.Fresh {
		t.Fatalf("claim: %+v %v", first, err)
	}
	if _, err := docs.DB.Pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	retry, err := idem.Begin(ctx, "agency:G09", "k-taken", "POST /v1/documents")
	if err != nil || !retry.Fresh {
		t.Fatalf("takeover: %+v %v", retry, err)
	}
	work := postgres.WithClaim(ctx, "agency:G09", "k-taken", first.Claim, nil)
	_, err = docs.Svc.Deposit(work, justice, &kho.DepositMetadata{SubjectID: "001090000001", Type: "GKS", Name: "Giấy khai sinh",
		IssuedOn: kho.Date{Time: time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)}, MediaType: "text/plain"}, strings.NewReader("nội dung"))
	if err != postgres.ErrClaimTakenOver {
		t.Fatalf("a deposit under a claim taken over: %v, want ErrClaimTakenOver", err)
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d documents committed under a lost claim (%v)", n, err)
	}
}

// The consent writes (a consent request, a grant, an approval, a denial)
// record what they did under their key as a deposit does: a retry after a
// khod that died between committing and answering gets the same answer,
// not a second consent, nor a 409 for a request it answered itself.
func TestConsentWritesCommittedBeforeTheirAnswerAreNotDoneTwice(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	terms := `"procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"` + until + `","mode":"once","data_life_days":30}`
	// A pending consent request to the citizen, for the answers.
	pending := func(t *testing.T) string {
		resp, b := d.call(t, police, "POST", "/v1/consent-requests", "application/json", strings.NewReader(`{"subject_id":"001090000001",`+terms), nil)
		var r struct{ ID string }
		if _ = json.Unmarshal(b, &r); resp.StatusCode != 201 || r.ID == "" {
			t.Fatalf("consent request: %d %s", resp.StatusCode, b)
		}
		return "/v1/consent-requests/" + r.ID
	}
	for _, tt := range []struct {
		name, path, body, table string
		who                     kho.Principal
		status                  int
		// result is what the key must record, from the first answer's id.
		result func(id string) string
		// meanwhile, if set, is SQL run on the first answer's id before
		// the retry.
		meanwhile string
	}{
		{"grant", "/v1/me/consents", `{"grantee":"000.00.15.H29",` + terms, "consents", citizen, 201, func(id string) string { return id }, ""},
		// The agency makes 200 more requests before its retry: the one it
		// made is still found.
		{"request", "/v1/consent-requests", `{"subject_id":"001090000001",` + terms, "consent_requests", police, 201, func(id string) string { return id },
			`INSERT INTO consent_requests (id, subject_handle, agency, procedure_code, purpose, document_types, valid_until, mode, max_uses, data_life_days, status, created_at)
			SELECT gen_random_uuid(), subject_handle, agency, procedure_code, purpose, document_types, valid_until, mode, max_uses, data_life_days, 'pending', now() + interval '1 minute'
			FROM consent_requests, generate_series(1, 200) WHERE id = $1`},
		{"approval", "/approval", "", "consents", citizen, 201, func(id string) string { return "approved:" + id }, ""},
		{"denial", "/denial", "", "consents", citizen, 200, func(string) string { return "denied" }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key, path := "died-"+tt.name, tt.path
			if !strings.HasPrefix(path, "/v1/") {
				path = pending(t) + path
			}
			resp, b := d.call(t, tt.who, "POST", path, "application/json", strings.NewReader(tt.body), map[string]string{"Idempotency-Key": key})
			var first struct{ ID, Request, Status string }
			_ = json.Unmarshal(b, &first)
			if resp.StatusCode != tt.status {
				t.Fatalf("first: %d %s", resp.StatusCode, b)
			}
			if tt.meanwhile != "" {
				if _, err := d.docs.DB.Pool.Exec(ctx, tt.meanwhile, first.ID); err != nil {
					t.Fatal(err)
				}
			}
			var before int
			if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM `+tt.table).Scan(&before); err != nil {
				t.Fatal(err)
			}
			// What a khod killed between the commit and its answer leaves;
			// the key must hold what was done.
			tag, err := d.docs.DB.Pool.Exec(ctx, `UPDATE idempotency_keys SET state = 'pending', request_hash = NULL, status = NULL, content_type = NULL,
				location = NULL, body = NULL, created_at = now() - interval '10 minutes' WHERE key = $1 AND result = $2`, key, tt.result(first.ID))
			if err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("the key does not record %q (%v)", tt.result(first.ID), err)
			}
			// Another body under the key is another request, even one that
			// starts as the first did: 422, and the key stays for the
			// genuine retry.
			// Whatever content type the retry claims.
			for _, ct := range []string{"application/json", "multipart/form-data; boundary=x"} {
				resp, b = d.call(t, tt.who, "POST", path, ct, strings.NewReader(tt.body+"{}"), map[string]string{"Idempotency-Key": key})
				if resp.StatusCode != 422 {
					t.Fatalf("a longer body under the key, as %s: %d %s, want 422", ct, resp.StatusCode, b)
				}
			}
			for i := range 2 {
				resp, b = d.call(t, tt.who, "POST", path, "application/json", strings.NewReader(tt.body), map[string]string{"Idempotency-Key": key})
				var again struct{ ID, Request, Status string }
				_ = json.Unmarshal(b, &again)
				if resp.StatusCode != tt.status || again != first || resp.Header.Get("Idempotent-Replayed") != "true" {
					t.Fatalf("retry %d: %d %s (replayed %q), want %d with %+v, replayed", i, resp.StatusCode, b, resp.Header.Get("Idempotent-Replayed"), tt.status, first)
				}
			}
			var after int
			if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM `+tt.table).Scan(&after); err != nil || after != before {
				t.Fatalf("%d rows in %s after the retry, %d before (%v)", after, tt.table, before, err)
			}
		})
	}
}

// agencySystem registers a signing key for agency and returns the token
// source of its system, asking for scopes.
func (d *docServer) agencySystem(t *testing.T, agency kho.AgencyCode, scopes ...string) *client.TokenSource {
	t.Helper()
	sig, sigSet := agencyKey(t, string(agency)+"-sig-1")
	if _, err := oauth.Register(testenv.Context(t), d.docs.DB, agency, sigSet); err != nil {
		t.Fatal(err)
	}
	return &client.TokenSource{Agency: string(agency), TokenURL: d.url + "/oauth/token", Audience: tokenIssuer + "/oauth/token", Key: sig, Scopes: scopes}
}

// An agency system whose token may deposit but not read still learns, on
// its retry after a khod died unanswered, the document its deposit made:
// the retry is answered as the deposit was, under the deposit's scope.
func TestDepositOnlyTokenRetryIsAnswered(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	ts := d.agencySystem(t, justice.Agency, "documents:deposit")
	ct, body := multipartBody(t, textMeta, []byte("giấy khai sinh"))
	raw := body.Bytes()
	call := func(method, path string, b []byte) (*http.Response, []byte) {
		tok, err := ts.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader
		if b != nil {
			r = bytes.NewReader(b)
		}
		return request(t, method, d.url+path, tok, ct, r, map[string]string{"Idempotency-Key": "deposit-only"})
	}
	resp, b := call("POST", "/v1/documents", raw)
	var first kho.Document
	if err := json.Unmarshal(b, &first); err != nil || resp.StatusCode != 201 {
		t.Fatalf("deposit: %d %s", resp.StatusCode, b)
	}
	if resp, b := call("GET", "/v1/documents/"+string(first.ID), nil); resp.StatusCode != 403 {
		t.Fatalf("a deposit-only token read a document: %d %s", resp.StatusCode, b)
	}
	dieUnanswered(t, d, "deposit-only")
	resp, b = call("POST", "/v1/documents", raw)
	var again kho.Document
	_ = json.Unmarshal(b, &again)
	if resp.StatusCode != 201 || again.ID != first.ID || again.SHA256 != first.SHA256 || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the retry: %d %s, want 201 with %s", resp.StatusCode, b, first.ID)
	}
	var n int
	if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d documents for one deposit (%v)", n, err)
	}
	// The trail says what happened: the deposit answered again, not a
	// read that the token's scope refused a moment before.
	var answered, read int
	if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'document.deposit_answered'),
		count(*) FILTER (WHERE action = 'document.metadata' AND outcome = 'success') FROM audit_events WHERE document_id = $1`, first.ID).Scan(&answered, &read); err != nil || answered != 1 || read != 0 {
		t.Fatalf("%d deposit answers and %d metadata reads recorded (%v), want 1 and 0", answered, read, err)
	}
}
