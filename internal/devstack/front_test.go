package devstack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// node is an HTTP server that says its name, and answers its health path
// with 200 or 503 as told.
func node(t *testing.T, name string, healthy *atomic.Bool) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func serveFront(t *testing.T, f *Front) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("front: %v", err)
		}
	})
	return ln.Addr().String()
}

// who asks the front n times, each on a new connection, and counts who
// answered; a connection the front closed counts as "".
func who(t *testing.T, addr string, n int) map[string]int {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	seen := map[string]int{}
	for range n {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			seen[""]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(b)]++
	}
	return seen
}

// The front spreads connections over the nodes, skips a node that does not
// accept (a killed MinIO or Vault node) without failing a connection, and
// skips a node whose health check fails (a sealed Vault) while another
// passes.
func TestFrontSpreadsAndSkipsNodesThatAreDown(t *testing.T) {
	var ok1, ok2, ok3 atomic.Bool
	ok1.Store(true)
	ok2.Store(true)
	ok3.Store(true)
	a, b := node(t, "a", &ok1), node(t, "b", &ok2)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // a node that was killed: its port refuses

	plain := serveFront(t, &Front{Backends: []string{a, deadAddr, b}, Interval: 50 * time.Millisecond})
	seen := who(t, plain, 12)
	if seen[""] != 0 || seen["a"] < 4 || seen["b"] < 4 {
		t.Fatalf("with one node of three dead: %v, want every connection served, spread over a and b", seen)
	}

	c := node(t, "c", &ok3)
	front := &Front{Backends: []string{a, b, c}, HealthPath: "/health", Interval: 50 * time.Millisecond}
	checked := serveFront(t, front)
	ok1.Store(false)
	ok2.Store(false)
	if seen := settled(t, checked, 6, func(seen map[string]int) bool { return seen["c"] == 6 }); seen["c"] != 6 {
		t.Fatalf("with a and b failing their check: %v, want c alone", seen)
	}
	// No node passes: every node is tried rather than none.
	ok3.Store(false)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		failing := 0
		for i := range front.healthy {
			if !front.healthy[i].Load() {
				failing++
			}
		}
		if failing == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 nodes marked failing, 10 s after all three began to fail their check", failing)
		}
	}
	if seen := who(t, checked, 6); seen[""] != 0 {
		t.Fatalf("with every check failing: %v, want connections still served", seen)
	}
	ok1.Store(true)
	ok2.Store(true)
	ok3.Store(true)
	allUsed := func(seen map[string]int) bool { return seen["a"] >= 2 && seen["b"] >= 2 && seen["c"] >= 2 }
	if seen := settled(t, checked, 9, allUsed); !allUsed(seen) {
		t.Fatalf("after recovery: %v, want all three used", seen)
	}
}

// settled asks the front n connections at a time until want holds of what
// they reached, for up to 10 s, and returns the last spread: the health
// checks run on their own clock, which a busy machine delays.
func settled(t *testing.T, front string, n int, want func(map[string]int) bool) map[string]int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen := who(t, front, n)
		if want(seen) || time.Now().After(deadline) {
			return seen
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A cluster replica's khod gets its own ports, the replica for lagging
// reads, and the front as the public URL its agencies' tokens name.
func TestKhodNodeEnv(t *testing.T) {
	st := &State{KhodListen: "127.0.0.1:8480", DatabaseAppURL: "postgres://kho_app:pw@127.0.0.1:15432/kho",
		Cluster: &ClusterState{ReplicaURL: "postgres://kho_app:pw@127.0.0.1:15433/kho",
			KhodNodes: []string{"127.0.0.1:8481", "127.0.0.1:8482"}, KhodMetrics: []string{"127.0.0.1:8491", "127.0.0.1:8492"}}}
	env := map[string]string{}
	for _, kv := range st.KhodNodeEnv(1) {
		if _, dup := env[kv[0]]; dup {
			t.Fatalf("%s set twice", kv[0])
		}
		env[kv[0]] = kv[1]
	}
	for k, want := range map[string]string{"KHO_LISTEN": "127.0.0.1:8482", "KHO_METRICS_LISTEN": "127.0.0.1:8492",
		"KHO_PUBLIC_URL": "http://127.0.0.1:8480", "KHO_DATABASE_READ_URL": st.Cluster.ReplicaURL, "KHO_DATABASE_URL": st.DatabaseAppURL} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}

// A node that answers before reading the whole upload and closes (khod's
// 503 when a dependency is down) gets its answer to the client through the
// front, not a reset that loses it.
func TestFrontDeliversAnEarlyAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = c.Read(make([]byte, 4096))
				_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye")
				c.Close()
			}()
		}
	}()
	front := serveFront(t, &Front{Backends: []string{ln.Addr().String()}})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	body := make([]byte, 20<<20)
	for i := 0; i < 5; i++ {
		resp, err := client.Post("http://"+front+"/v1/documents", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v, want the node's 503", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("upload %d: %d", i, resp.StatusCode)
		}
	}
}
