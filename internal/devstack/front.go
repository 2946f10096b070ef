package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"kho/internal/httpok"
)

// Front is the dev cluster's stand-in for a load balancer: a TCP front that
// spreads connections round-robin over a service's nodes. A node that does
// not accept a connection is skipped at once, and with a health path a node
// whose check fails is skipped until it passes again (a sealed Vault, a
// khod that is not up). When no node passes, every node is tried, so a
// front never refuses while a node would serve.
//
// It is TCP, not HTTP: a connection stays with its node, as with a
// production TCP balancer, and a node that dies drops the connections it
// held. Retrying those is the client's work (khod's, for MinIO).
type Front struct {
	Backends []string // host:port of each node
	// HealthPath, when set, is fetched from each node every Interval over
	// HTTP; an answer of 200 marks the node usable. Without it, a node that
	// accepts a TCP connection is usable.
	HealthPath string
	Interval   time.Duration

	next    atomic.Uint32
	healthy []atomic.Bool
}

// Serve accepts on ln until ctx ends.
func (f *Front) Serve(ctx context.Context, ln net.Listener) error {
	if len(f.Backends) == 0 {
		return errors.New("front: no backends")
	}
	f.healthy = make([]atomic.Bool, len(f.Backends))
	for i := range f.healthy {
		f.healthy[i].Store(true)
	}
	if f.Interval <= 0 {
		f.Interval = 500 * time.Millisecond
	}
	f.check(ctx)
	go f.checkLoop(ctx)
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); f.handle(ctx, c) }()
	}
}

// order lists the nodes to try for one connection: round-robin from the
// next one, the healthy first.
func (f *Front) order() []int {
	n := len(f.Backends)
	start := int(f.next.Add(1)-1) % n
	var good, bad []int
	for k := 0; k < n; k++ {
		i := (start + k) % n
		if f.healthy[i].Load() {
			good = append(good, i)
		} else {
			bad = append(bad, i)
		}
	}
	return append(good, bad...)
}

func (f *Front) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	var b net.Conn
	for _, i := range f.order() {
		var err error
		if b, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", f.Backends[i]); err == nil {
			break
		}
		f.healthy[i].Store(false)
	}
	if b == nil {
		return // every node refused: the client sees its connection closed
	}
	defer b.Close()
	// The node's answer reaches the client whole: when the node closes
	// after answering (khod refusing an upload before reading all of it,
	// its kernel resetting the connection over the unread rest), the
	// client gets what the node sent and then an end of stream, and what
	// it still sends is read and dropped for a while: a reset would lose
	// the answer in the client's socket. A node that dies mid-answer
	// leaves its client a short answer, which it sees as such.
	toNode := make(chan struct{})
	go func() {
		defer close(toNode)
		if _, err := io.Copy(b, c); err != nil {
			_ = c.SetReadDeadline(time.Now().Add(frontDrain))
			_, _ = io.Copy(io.Discard, c)
		}
		halfClose(b)
	}()
	_, _ = io.Copy(c, b)
	halfClose(c)
	select {
	case <-toNode:
	case <-time.After(frontDrain):
	}
}

// frontDrain is how long a front reads what a client still sends to a
// node that has closed.
const frontDrain = 5 * time.Second

// halfClose ends a TCP connection's sending side.
func halfClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	c.Close()
}

func (f *Front) checkLoop(ctx context.Context) {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.check(ctx)
		}
	}
}

var frontHealthClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (f *Front) check(ctx context.Context) {
	var wg sync.WaitGroup
	for i, addr := range f.Backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if f.HealthPath == "" {
				c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
				if err == nil {
					c.Close()
				}
				f.healthy[i].Store(err == nil)
				return
			}
			f.healthy[i].Store(httpOK(ctx, "http://"+addr+f.HealthPath))
		}()
	}
	wg.Wait()
}

func httpOK(ctx context.Context, url string) bool {
	return httpok.Get(ctx, frontHealthClient, url)
}

// frontArgs are the arguments of the kho command that runs a front
// detached: kho dev front.
func frontArgs(listen string, backends []string, health string) []string {
	args := []string{"dev", "front", "--listen", listen, "--health", health}
	for _, b := range backends {
		args = append(args, "--backend", b)
	}
	return args
}

// startFront starts `kho dev front` detached and waits until it accepts.
func (s *Stack) startFront(name, listen string, backends []string, health string) error {
	pf := s.frontPID(name)
	if pid, err := pf.Running(); err != nil {
		return err
	} else if pid != 0 {
		return nil
	}
	if s.KhoBinary == "" {
		return errors.New("the cluster's fronts need the kho binary (Stack.KhoBinary)")
	}
	_, port, _ := net.SplitHostPort(listen)
	if c, err := net.DialTimeout("tcp", listen, 300*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("port %s is taken by a process this stack did not start", port)
	}
	logPath := s.path("logs", name+"-front.log")
	if _, err := startDetached(pf, s.KhoBinary, frontArgs(listen, backends, health), []string{"PATH=/usr/bin:/bin"}, logPath, nil); err != nil {
		return fmt.Errorf("%s front: %w", name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", listen, 300*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return logError(logPath, "%s front not listening on %s after 10 s", name, listen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
