package storage

import (
	"context"
	"io"
	"time"

	"kho"
)

// Budget bounds the memory that bodies read whole hold together, counted
// in 64 KiB units taken as the bytes arrive: a connection that sent
// nothing holds nothing, and one that sends slowly holds only what it has
// sent. The CPU-heavy work on a body takes a slot only once the body is
// in.
type Budget chan struct{}

// budgetUnit is what one token of a Budget stands for.
const budgetUnit = 64 << 10

// NewBudget makes a budget of mib MiB.
func NewBudget(mib int) Budget { return make(Budget, max(mib, 1)*(1<<20/budgetUnit)) }

// ReadAll reads r whole, up to limit bytes (more is ETOOLARGE), taking
// budget for the bytes as they arrive; the returned function gives it back
// and must be called once the bytes are no longer held. When the budget
// stays spent for two seconds the read is refused as a temporary overload
// (EUNAVAILABLE).
func (b Budget) ReadAll(ctx context.Context, r io.Reader, limit int64, what string) ([]byte, func(), error) {
	var out []byte
	taken := 0
	release := func() { b.give(taken); taken = 0 }
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if int64(len(out)+n) > limit {
			release()
			return nil, nil, kho.Errorf(kho.ETOOLARGE, "%s may be at most %d bytes", what, limit)
		}
		for need := (len(out) + n + budgetUnit - 1) / budgetUnit; taken < need; taken++ {
			if terr := b.take(ctx); terr != nil {
				release()
				return nil, nil, terr
			}
		}
		out = append(out, buf[:n]...)
		if err == io.EOF {
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
	if b.tryTake() {
		return nil
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

// tryTake takes one unit if one is free, without waiting.
func (b Budget) tryTake() bool {
	select {
	case b <- struct{}{}:
		return true
	default:
		return false
	}
}

// give returns n units.
func (b Budget) give(n int) {
	for ; n > 0; n-- {
		<-b
	}
}
