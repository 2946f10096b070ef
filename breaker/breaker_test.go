package breaker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// The circuit opens after the threshold of consecutive failures, refuses
// at once while open, lets one probe through after the cool-down, closes
// on its success and opens again on its failure.
func TestBreakerOpensProbesAndCloses(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	b := New("minio", 3, 5*time.Second)
	b.now = c.now
	for i := 0; i < 2; i++ {
		if err := b.Allow(); err != nil {
			t.Fatal(err)
		}
		b.Done(true)
	}
	b.Done(false) // a success in between: the run starts again
	for i := 0; i < 3; i++ {
		if err := b.Allow(); err != nil {
			t.Fatalf("call %d refused before the threshold: %v", i, err)
		}
		b.Done(true)
	}
	err := b.Allow()
	if !IsOpen(err) || !strings.Contains(err.Error(), "minio") {
		t.Fatalf("open circuit let a call through: %v", err)
	}
	c.t = c.t.Add(5 * time.Second)
	if err := b.Allow(); err != nil {
		t.Fatalf("no probe after the cool-down: %v", err)
	}
	if err := b.Allow(); !IsOpen(err) {
		t.Fatal("a second call went while the probe was out")
	}
	b.Done(true) // the probe failed: open again, for a full cool-down
	c.t = c.t.Add(4 * time.Second)
	if err := b.Allow(); !IsOpen(err) {
		t.Fatal("a failed probe did not reopen the circuit")
	}
	c.t = c.t.Add(time.Second)
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	b.Abandon() // the caller gave up: nothing learnt, another probe may go
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
	b.Done(false)
	if open, _ := b.State(); open {
		t.Fatal("a successful probe left the circuit open")
	}
	if err := b.Allow(); err != nil {
		t.Fatal(err)
	}
}

// Through the transport: 503s and unreachable servers count, 4xx answers do
// not, and an open circuit answers without a request reaching the server.
func TestTransportCountsOutagesOnly(t *testing.T) {
	status := http.StatusServiceUnavailable
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.WriteHeader(status)
	}))
	defer srv.Close()
	b := New("vault", 2, time.Hour)
	cl := &http.Client{Transport: b.Transport(nil)}
	get := func() error {
		resp, err := cl.Get(srv.URL)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}
	status = http.StatusNotFound
	for i := 0; i < 5; i++ {
		if err := get(); err != nil {
			t.Fatal(err)
		}
	}
	status = http.StatusServiceUnavailable
	get()
	get()
	before := hits
	if err := get(); !IsOpen(err) {
		t.Fatalf("two 503s did not open the circuit: %v", err)
	}
	if hits != before {
		t.Fatal("a refused call reached the server")
	}
	dead := &http.Client{Transport: New("minio", 1, time.Hour).Transport(nil)}
	if _, err := dead.Get("http://127.0.0.1:1/"); err == nil || IsOpen(err) {
		t.Fatalf("first call to a dead server: %v", err)
	}
	if _, err := dead.Get("http://127.0.0.1:1/"); !IsOpen(err) {
		t.Fatalf("second call to a dead server: %v", err)
	}
	var oe *OpenError
	_, err := dead.Get("http://127.0.0.1:1/")
	if !errors.As(err, &oe) || oe.Name != "minio" {
		t.Fatalf("%v", err)
	}
}

// A server that never answers: calls whose deadline passes count as
// failures (Vault's client enforces its timeout with the request's
// deadline), calls the caller cancels do not.
func TestDeadlinesCountCancellationsDoNot(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	b := New("vault", 2, time.Hour)
	cl := &http.Client{Transport: b.Transport(nil)}
	call := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(20 * time.Millisecond); cancel() }()
		call(ctx)
	}
	if open, _ := b.State(); open {
		t.Fatal("cancelled calls opened the circuit")
	}
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		call(ctx)
		cancel()
	}
	if err := call(context.Background()); !IsOpen(err) {
		t.Fatalf("calls that timed out did not open the circuit: %v", err)
	}
}

// Check refuses during the cool-down only, and takes no probe: every call
// goes after it, and a failure opens the circuit again at once.
func TestCheckRefusesDuringTheCoolDownOnly(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	b := New("postgresql", 2, 3*time.Second)
	b.now = c.now
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	b.Done(true)
	b.Done(true)
	if err := b.Check(); !IsOpen(err) {
		t.Fatalf("open circuit: %v", err)
	}
	c.t = c.t.Add(3 * time.Second)
	for i := 0; i < 3; i++ {
		if err := b.Check(); err != nil {
			t.Fatalf("call %d after the cool-down: %v", i, err)
		}
	}
	b.Done(true)
	if err := b.Check(); !IsOpen(err) {
		t.Fatal("a failure after the cool-down did not open the circuit again")
	}
	c.t = c.t.Add(3 * time.Second)
	b.Done(false)
	if open, _ := b.State(); open || b.Check() != nil {
		t.Fatal("a success left the circuit open")
	}
}
