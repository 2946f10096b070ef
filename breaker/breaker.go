// Package breaker answers for a dependency that is down: after a run of
// failed calls to it, calls fail at once for a cool-down instead of each
// waiting for its own timeout, then one probe call decides whether it is
// back. khod puts one in front of MinIO and one in front of Vault, at the
// HTTP transport, so a dead or frozen server costs a request milliseconds,
// not seconds, and readiness reports it.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Breaker is one dependency's circuit. The zero value is not usable: use
// New.
type Breaker struct {
	name      string
	threshold int
	cooldown  time.Duration
	now       func() time.Time

	mu        sync.Mutex
	failures  int       // consecutive
	openUntil time.Time // zero: closed
	probing   bool      // a probe call is out
}

// New makes a breaker that opens after threshold consecutive failures and
// stays open for cooldown before it lets a probe through.
func New(name string, threshold int, cooldown time.Duration) *Breaker {
	return &Breaker{name: name, threshold: max(threshold, 1), cooldown: cooldown, now: time.Now}
}

// OpenError is the failure of a call the breaker did not let through.
type OpenError struct {
	Name  string
	Until time.Time
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("%s is failing: calls are refused until %s (circuit open)", e.Name, e.Until.UTC().Format(time.RFC3339))
}

// Timeout makes an open circuit look like the network error it stands for
// to clients that classify errors that way.
func (e *OpenError) Timeout() bool   { return false }
func (e *OpenError) Temporary() bool { return true }

// IsOpen reports whether err is a call an open breaker refused.
func IsOpen(err error) bool {
	var oe *OpenError
	return errors.As(err, &oe)
}

// Allow says whether a call may go now; when it may not, the error says
// until when. After the cool-down, one call (the probe) is let through at a
// time until one succeeds.
func (b *Breaker) Allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.IsZero() {
		return nil
	}
	if b.now().Before(b.openUntil) || b.probing {
		return &OpenError{Name: b.name, Until: b.openUntil}
	}
	b.probing = true
	return nil
}

// Check refuses while the circuit is open and its cool-down runs, and
// lets everything through otherwise, without taking the probe: for callers
// that cannot tie the outcome of the call to this check (PostgreSQL's
// pool, which learns outcomes from a tracer). Past the cool-down all calls
// go, and the first failure opens the circuit again.
func (b *Breaker) Check() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.openUntil.IsZero() && b.now().Before(b.openUntil) {
		return &OpenError{Name: b.name, Until: b.openUntil}
	}
	return nil
}

// Done records a call's outcome: failed means the dependency failed
// (unreachable, timed out, answered 5xx), not that it refused a request.
func (b *Breaker) Done(failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if !failed {
		b.failures, b.openUntil = 0, time.Time{}
		return
	}
	b.failures++
	if b.failures >= b.threshold || !b.openUntil.IsZero() {
		b.openUntil = b.now().Add(b.cooldown)
	}
}

// Abandon records a call that ended without telling anything of the
// dependency (the caller gave up): a probe may go again.
func (b *Breaker) Abandon() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

// State reports whether the circuit is open and, if so, until when.
func (b *Breaker) State() (open bool, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.openUntil.IsZero(), b.openUntil
}

// Transport puts the breaker in front of next: a transport error or a 5xx
// answer (502, 503, 504: the server or what is in front of it is down) is
// a failure; any other answer is a success.
func (b *Breaker) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{b: b, next: next}
}

type roundTripper struct {
	b    *Breaker
	next http.RoundTripper
}

func (t roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.b.Allow(); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(r)
	switch {
	case err != nil && errors.Is(r.Context().Err(), context.Canceled):
		// A request the caller cancelled says nothing of the server; one
		// whose deadline passed (Vault's client bounds each call so) waited
		// for an answer that did not come.
		t.b.Abandon()
	case err != nil:
		t.b.Done(true)
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout:
		t.b.Done(true)
	default:
		t.b.Done(false)
	}
	return resp, err
}
