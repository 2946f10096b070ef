package storage

import (
	"context"
	"io"
	"time"

	"kho"
)

// Budget bounds the memory that bodies read whole may hold together, in
// MiB, taken as the bytes arrive: a client that sends slowly holds only
// what it has sent, never a slot others need. The CPU-heavy work on a body
// takes a slot only once the body is in.
type Budget chan struct{}

// NewBudget makes a budget of mib MiB.
func NewBudget(mib int) Budget { return make(Budget, max(mib, 1)) }

const budgetChunk = 1 << 20

// ReadAll reads r whole, up to limit bytes (more is ETOOLARGE), taking a
// MiB of the budget before each MiB it reads; the returned function gives
// it back. When the budget stays spent for two seconds the read is refused
// as a temporary overload (EUNAVAILABLE).
func (b Budget) ReadAll(ctx context.Context, r io.Reader, limit int64, what string) ([]byte, func(), error) {
	var out []byte
	taken := 0
	release := func() {
		for ; taken > 0; taken-- {
			<-b
		}
	}
	for {
		if err := b.take(ctx); err != nil {
			release()
			return nil, nil, err
		}
		taken++
		chunk := make([]byte, budgetChunk)
		n, err := io.ReadFull(r, chunk)
		out = append(out, chunk[:n]...)
		if int64(len(out)) > limit {
			release()
			return nil, nil, kho.Errorf(kho.ETOOLARGE, "%s may be at most %d bytes", what, limit)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return out, release, nil
		}
		if err != nil {
			release()
			if kho.ErrorCode(err) != kho.EINTERNAL {
				return nil, nil, err
			}
			return nil, nil, kho.WrapError(kho.EINVALID, "could not read "+what, err)
		}
	}
}

func (b Budget) take(ctx context.Context) error {
	select {
	case b <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case b <- struct{}{}:
		return nil
	case <-t.C:
		return kho.Errorf(kho.EUNAVAILABLE, "too many documents are being read at once; try again shortly")
	case <-ctx.Done():
		return kho.WrapError(kho.EUNAVAILABLE, "the request was cancelled", ctx.Err())
	}
}
