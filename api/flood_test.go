package api_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"kho/api"
	"kho/internal/testenv"
)

// floodBadTokens sends n requests with forged tokens from c workers and
// returns the statuses seen.
func floodBadTokens(t testing.TB, d *docServer, n, c int) map[int]int {
	t.Helper()
	forged := newSigner(t).sign(t, claims())
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	client := &http.Client{Timeout: 10 * time.Second}
	for range c {
		wg.Go(func() {
			for range next {
				req, _ := http.NewRequest("GET", d.url+"/v1/me", nil)
				req.Header.Set("Authorization", "Bearer "+forged)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return statuses
}

func authFailures(t testing.TB, d *docServer) (events, counted int) {
	t.Helper()
	err := d.docs.DB.Pool.QueryRow(testenv.Context(t), `SELECT count(*), coalesce(sum(coalesce((details->>'count')::int, 1)), 0)
		FROM audit_events WHERE action = 'auth.failed'`).Scan(&events, &counted)
	if err != nil {
		t.Fatal(err)
	}
	return events, counted
}

// 10,000 forged tokens from one address cost the audit trail a few events,
// not 10,000, and the count is kept: the first failure is recorded at once,
// the rest as one total when the window ends (here, at shutdown). Past its
// allowance the source's failures answer 429, while a valid token from the
// same address still passes: the flood does not lock honest callers out.
func TestBadTokenFloodIsAggregated(t *testing.T) {
	d := newDocServer(t, 0)
	statuses := floodBadTokens(t, d, 10_000, 16)
	// During the flood too.
	if resp, b := d.call(t, citizen, "GET", "/v1/me", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("a good token in the flood's window: %d %s", resp.StatusCode, b)
	}
	if statuses[401]+statuses[429] != 10_000 || statuses[401] == 0 || statuses[429] == 0 {
		t.Fatalf("statuses: %v", statuses)
	}
	events, _ := authFailures(t, d)
	if events > 3 {
		t.Fatalf("10,000 bad tokens made %d audit events", events)
	}
	d.srv.Close(testenv.Context(t))
	events, counted := authFailures(t, d)
	if events > 4 || counted != 10_000 {
		t.Fatalf("after the window: %d events counting %d failures, want a few counting 10000", events, counted)
	}
	// A good token from the same address still works: the allowance is for
	// failures, and a valid caller is limited by its own rate.
	resp, b := d.call(t, citizen, "GET", "/v1/me", "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("a good token after the flood: %d %s", resp.StatusCode, b)
	}
}

// Each principal has its own budget of requests: past it, 429 with
// Retry-After, and another principal is not affected.
func TestRateLimitPerPrincipal(t *testing.T) {
	d := newDocServerWith(t, 0, api.Limits{RequestsPerSecond: 0.001, Burst: 3}) // no refill while the test runs
	for i := range 3 {
		if resp, b := d.call(t, citizen, "GET", "/v1/me", "", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("call %d within the burst: %d %s", i, resp.StatusCode, b)
		}
	}
	resp, b := d.call(t, citizen, "GET", "/v1/me", "", nil, nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("over the budget: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if resp, b := d.call(t, stranger, "GET", "/v1/me", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("another principal: %d %s", resp.StatusCode, b)
	}
}

// Every answer carries the headers that keep personal data out of caches,
// sniffers, frames and referrers.
func TestSecurityHeaders(t *testing.T) {
	d := newDocServer(t, 0)
	for _, path := range []string{"/v1/me", "/v1/me/documents", "/v1/nope"} {
		resp, _ := d.call(t, citizen, "GET", path, "", nil, nil)
		for k, want := range map[string]string{
			"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, resp.Header.Get("Content-Security-Policy"))
		}
	}
}

// BenchmarkDepositUnderBadTokenFlood measures a deposit alone and while
// 10,000 forged tokens arrive, and reports the ratio and the audit events
// the flood added.
func BenchmarkDepositUnderBadTokenFlood(b *testing.B) {
	d := newDocServer(b, 0)
	body := strings.Repeat("x", 64<<10)
	deposit := func() time.Duration {
		start := time.Now()
		ct, mb := multipartBody(b, textMeta, []byte(body))
		resp, out := request(b, "POST", d.url+"/v1/documents", d.token(b, justice), ct, mb, nil)
		if resp.StatusCode != 201 {
			b.Fatalf("deposit: %d %s", resp.StatusCode, out)
		}
		return time.Since(start)
	}
	for range 5 {
		deposit() // warm keys and certificates
	}
	var alone, flooded time.Duration
	var events int
	for b.Loop() {
		alone += deposit()
		before, _ := authFailures(b, d)
		done := make(chan struct{})
		go func() {
			floodBadTokens(b, d, 10_000, 16)
			close(done)
		}()
		time.Sleep(50 * time.Millisecond)
		flooded += deposit()
		<-done
		after, _ := authFailures(b, d)
		events += after - before
	}
	b.ReportMetric(float64(flooded)/float64(alone), "slowdown")
	b.ReportMetric(float64(events)/float64(b.N), "audit-events/10k-bad-tokens")
}

// Slow senders hold no slot: eight clients that announce a megabyte and
// then stall, on PDF verification and on deposits of documents checked in
// memory, do not keep a PDF from being verified or a JSON document from
// being deposited.
func TestSlowSendersHoldNoSlot(t *testing.T) {
	d := newDocServer(t, 0)
	host := strings.TrimPrefix(d.url, "http://")
	jsonMeta := strings.Replace(textMeta, "text/plain", "application/json", 1)
	ct, body := multipartBody(t, jsonMeta, append([]byte(`{"a":"`), bytes.Repeat([]byte("x"), 1<<20)...))
	stalled := body.Bytes()[:body.Len()/2]
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 8 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i%2 == 0 {
			fmt.Fprintf(c, "POST /v1/pdf-signatures/verification HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/pdf\r\nContent-Length: %d\r\n\r\n%%PDF-1.7\n",
				host, d.token(t, citizen), 1<<20)
		} else {
			fmt.Fprintf(c, "POST /v1/documents HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
				host, d.token(t, justice), ct, body.Len())
			c.Write(stalled)
		}
	}
	time.Sleep(500 * time.Millisecond) // every stalled request is in its handler
	pdfMeta := strings.Replace(textMeta, "text/plain", "application/pdf", 1)
	doc := d.deposit(t, justice, pdfMeta, testenv.PDF("kết quả / result"))
	_, signed := d.call(t, citizen, "GET", "/v1/documents/"+string(doc.ID)+"/content", "", nil, nil)
	if resp, b := d.call(t, citizen, "POST", "/v1/pdf-signatures/verification", "application/pdf", bytes.NewReader(signed), nil); resp.StatusCode != 200 {
		t.Fatalf("verification beside stalled senders: %d %s", resp.StatusCode, b)
	}
	d.deposit(t, justice, jsonMeta, []byte(`{"giấy tờ":"kết quả"}`))
}
