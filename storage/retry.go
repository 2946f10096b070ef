package storage

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"kho/breaker"
)

// A MinIO call that fails on its way, rather than being answered, is tried
// again, on a fresh connection since the old one died: in a distributed
// MinIO a node that dies drops the connections it held (the balancer sends
// the next one to a node that lives). One refused for now is tried again
// too: a node that loses a peer answers SlowDown or stalls while its locks
// settle, and one that starts refuses calls while it loads. A timeout is
// tried again once, each attempt waiting half the answer timeout, so a
// frozen MinIO is still reported within it; an open circuit is an outage
// to report at once, and an answer (NoSuchKey, AccessDenied) is the answer.
const (
	callAttempts = 4
	retryPause   = 100 * time.Millisecond
)

// transient reports whether err is a failure a second attempt on another
// connection may not meet.
func transient(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || breaker.IsOpen(err) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	switch minio.ToErrorResponse(err).Code {
	case "SlowDown", "SlowDownWrite", "SlowDownRead",
		// A node that listens before its object layer, its accounts and
		// its buckets' settings are loaded, which a balancer's health
		// check (live, ready) does not show for the last two.
		"XMinioServerNotInitialized", "XMinioIAMNotInitialized", "XMinioBucketMetadataNotInitialized":
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		// The connection was closed under a write, once its read side
		// saw the peer go.
		errors.Is(err, net.ErrClosed) ||
		// minio-go replaces a connection's end before an answer with
		// an error of its own.
		strings.Contains(err.Error(), "Connection closed by foreign host")
}

// retry decides, call by call, whether a call that failed is tried again:
// a transient failure while attempts remain; and a timeout while MinIO
// answers its liveness probe (live) and the call is younger than
// degradedBudget. A cluster that lost a node stalls writes for a few
// seconds while it settles, and answers its probe meanwhile; a MinIO that
// froze answers nothing, and its timeout is the outage, reported at once.
type retry struct {
	attempts int
	start    time.Time
	live     func(context.Context) bool
}

// degradedBudget bounds how long a call is tried again while MinIO is
// alive but does not answer it.
const degradedBudget = 10 * time.Second

func newRetry(live func(context.Context) bool) *retry {
	return &retry{start: time.Now(), live: live}
}

// again reports whether to try again after err, having waited first.
func (r *retry) again(ctx context.Context, err error) bool {
	r.attempts++
	if err == nil || ctx.Err() != nil || breaker.IsOpen(err) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if r.live == nil || time.Since(r.start) > degradedBudget || !r.live(ctx) {
			return false
		}
		return pause(ctx, 1)
	}
	if r.attempts >= callAttempts || !transient(ctx, err) {
		return false
	}
	return pause(ctx, r.attempts)
}

// pause waits before attempt n+1, or until ctx ends.
func pause(ctx context.Context, n int) bool {
	t := time.NewTimer(time.Duration(n) * retryPause)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// rewinder is an upload body that can be sent again from its start.
type rewinder interface {
	io.Reader
	// Kept reports whether the body is being kept for another attempt.
	Kept() bool
	// Again returns the body from its first byte, for another attempt;
	// false when it was not kept. The previous attempt's reader fails from
	// then on: net/http may still be reading it when the attempt returns.
	Again() (io.Reader, bool)
}

// replay is an upload body that keeps what it passed on, up to the size
// of a look-ahead document, so that an upload that failed on its way can be
// sent again while its source (the encryption) goes on. Its memory is taken
// from the deposit budget as it grows and never waited for: without budget
// the body is not kept and the upload is not retried.
type replay struct {
	mu     sync.Mutex
	src    io.Reader
	budget Budget
	bp     *[]byte
	buf    []byte
	taken  int
	lost   bool
	gen    int
}

// replayMax is the largest body kept: a look-ahead document's ciphertext
// (age adds 16 bytes per 64 KiB and a header of about 200 bytes).
const replayMax = lookAhead + 64<<10

var replayBuffers = sync.Pool{New: func() any { b := make([]byte, 0, replayMax); return &b }}

// errStaleAttempt is what an abandoned attempt's reader returns.
var errStaleAttempt = errors.New("storage: a later attempt took over this upload's body")

// replayReader is one attempt's view of a replay.
type replayReader struct {
	r   *replay
	gen int
	pos int
}

// newReplay keeps up to size bytes of src, a body of that known length;
// larger bodies are not kept.
func newReplay(src io.Reader, size int64, budget Budget) *replayReader {
	r := &replay{src: src, budget: budget}
	if size < 0 || size > replayMax {
		r.lost = true
	} else {
		r.bp = replayBuffers.Get().(*[]byte)
		r.buf = (*r.bp)[:0]
	}
	return &replayReader{r: r}
}

func (a *replayReader) Read(p []byte) (int, error) {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.gen != r.gen {
		return 0, errStaleAttempt
	}
	if a.pos < len(r.buf) {
		n := copy(p, r.buf[a.pos:])
		a.pos += n
		return n, nil
	}
	n, err := r.src.Read(p)
	if n > 0 && !r.lost {
		if len(r.buf)+n > cap(r.buf) {
			r.lost = true
		}
		for need := (len(r.buf) + n + budgetUnit - 1) / budgetUnit; !r.lost && r.taken < need; {
			if !r.budget.tryTake() {
				r.lost = true
				break
			}
			r.taken++
		}
		if !r.lost {
			r.buf = append(r.buf, p[:n]...)
			a.pos = len(r.buf)
		}
	}
	return n, err
}

// Kept reports whether the body is (still) kept.
func (a *replayReader) Kept() bool {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	return !a.r.lost
}

// Again starts the body again from its first byte.
func (a *replayReader) Again() (io.Reader, bool) {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost {
		return nil, false
	}
	r.gen++
	return &replayReader{r: r, gen: r.gen}, true
}

// release gives back the kept body's memory; every reader fails after it.
func (a *replayReader) release() {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.budget.give(r.taken)
	r.taken = 0
	if r.bp != nil {
		*r.bp = r.buf[:0]
		replayBuffers.Put(r.bp)
		r.bp, r.buf = nil, nil
	}
	r.lost = true
}
