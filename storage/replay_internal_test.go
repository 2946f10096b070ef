package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"kho/breaker"
)

// A kept body is sent again from its first byte, also when the failed
// attempt had read only part of it, and the rest still comes from the
// source; the failed attempt's reader fails once another took over.
func TestReplaySendsTheBodyAgain(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640,000 bytes
	budget := NewBudget(8)
	first := newReplay(bytes.NewReader(src), int64(len(src)), budget)
	part := make([]byte, 100000)
	if _, err := io.ReadFull(first, part); err != nil {
		t.Fatal(err)
	}
	again, ok := first.Again()
	if !ok {
		t.Fatal("a body within the look-ahead was not kept")
	}
	if _, err := first.Read(part); !errors.Is(err, errStaleAttempt) {
		t.Fatalf("the abandoned attempt's reader: %v, want refused", err)
	}
	got, err := io.ReadAll(again)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("the second attempt read %d bytes (%v), want the whole body", len(got), err)
	}
	if len(budget) == 0 {
		t.Fatal("the kept body took no budget")
	}
	first.release()
	if len(budget) != 0 {
		t.Fatalf("%d budget units still taken after release", len(budget))
	}
}

// Without budget to spare, or beyond the look-ahead, or of unknown length,
// a body is not kept and not sent again.
func TestReplayKeepsNothingItCannotAfford(t *testing.T) {
	src := bytes.Repeat([]byte("x"), 300<<10)
	for _, tt := range []struct {
		name   string
		size   int64
		budget Budget
	}{
		{"no budget", int64(len(src)), make(Budget, 2)},
		{"unknown length", -1, NewBudget(8)},
		{"beyond the look-ahead", replayMax + 1, NewBudget(8)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplay(bytes.NewReader(src), tt.size, tt.budget)
			if _, err := io.ReadAll(r); err != nil {
				t.Fatal(err)
			}
			if _, ok := r.Again(); ok {
				t.Fatal("a body that was not kept would be sent again")
			}
			r.release()
			if len(tt.budget) != 0 {
				t.Fatalf("%d budget units still taken", len(tt.budget))
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// Only failures on the way are tried again: never a timeout (a frozen
// MinIO must be an outage within seconds), an open circuit, MinIO's own
// answer, or a call whose caller gave up.
func TestTransientFailures(t *testing.T) {
	ctx := context.Background()
	done, cancel := context.WithCancel(ctx)
	cancel()
	urlErr := func(err error) error { return &url.Error{Op: "Put", URL: "http://minio/o", Err: err} }
	for _, tt := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"connection reset", ctx, urlErr(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"connection refused", ctx, urlErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), true},
		{"broken pipe", ctx, urlErr(&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}), true},
		{"cut body", ctx, io.ErrUnexpectedEOF, true},
		{"closed under a write", ctx, urlErr(&net.OpError{Op: "write", Err: net.ErrClosed}), true},
		{"closed before an answer", ctx, urlErr(errors.New("Connection closed by foreign host http://minio/o. Retry again.")), true},
		{"SlowDownWrite", ctx, minio.ErrorResponse{Code: "SlowDownWrite", StatusCode: 503}, true},
		{"a node starting", ctx, minio.ErrorResponse{Code: "XMinioServerNotInitialized", StatusCode: 503}, true},
		{"a node loading its accounts", ctx, minio.ErrorResponse{Code: "XMinioIAMNotInitialized", StatusCode: 503}, true},
		{"timeout", ctx, urlErr(timeoutErr{}), false},
		{"deadline", ctx, urlErr(os.ErrDeadlineExceeded), false},
		{"open circuit", ctx, &breaker.OpenError{Name: "minio", Until: time.Now().Add(time.Second)}, false},
		{"NoSuchKey", ctx, minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, false},
		{"AccessDenied", ctx, minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
		{"caller gone", done, io.ErrUnexpectedEOF, false},
		{"other", ctx, fmt.Errorf("something else"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := transient(tt.ctx, tt.err); got != tt.want {
				t.Fatalf("transient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// A call is tried again after transient failures while attempts remain;
// after a timeout only while MinIO answers its liveness probe and the call
// is within its budget; never after an open circuit or an answer.
func TestRetry(t *testing.T) {
	ctx := context.Background()
	timeout := &url.Error{Op: "Get", URL: "http://minio/o", Err: timeoutErr{}}
	reset := &url.Error{Op: "Get", URL: "http://minio/o", Err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	iamStarting := minio.ErrorResponse{Code: "XMinioIAMNotInitialized", StatusCode: 503}
	alive := func(context.Context) bool { return true }
	frozen := func(context.Context) bool { return false }
	for _, tt := range []struct {
		name string
		live func(context.Context) bool
		age  time.Duration
		errs []error
		want []bool
	}{
		{"timeouts while MinIO is alive", alive, 0, []error{timeout, timeout, timeout}, []bool{true, true, true}},
		{"a timeout while MinIO answers nothing", frozen, 0, []error{timeout}, []bool{false}},
		{"a timeout past the budget", alive, degradedBudget + time.Second, []error{timeout}, []bool{false}},
		{"resets until the last attempt", frozen, 0, []error{reset, reset, reset, reset}, []bool{true, true, true, false}},
		{"a node starting, until the last attempt", frozen, 0, []error{iamStarting, iamStarting, iamStarting, iamStarting}, []bool{true, true, true, false}},
		{"open circuit", alive, 0, []error{&breaker.OpenError{Name: "minio"}}, []bool{false}},
		{"an answer", alive, 0, []error{minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}}, []bool{false}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRetry(tt.live)
			r.start = r.start.Add(-tt.age)
			for i, err := range tt.errs {
				if got := r.again(ctx, err); got != tt.want[i] {
					t.Fatalf("after failure %d (%v): again = %v, want %v", i+1, err, got, tt.want[i])
				}
			}
		})
	}
}
