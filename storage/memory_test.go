package storage_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kho"
)

// textStream yields n bytes of printable text without holding them.
type textStream struct {
	n, off int64
	block  []byte
}

func newTextStream(n int64) *textStream {
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = "abcdefghijklmnopqrstuvwxyz .\n"[i%29]
	}
	return &textStream{n: n, block: block}
}

func (s *textStream) Read(p []byte) (int, error) {
	if s.off >= s.n {
		return 0, io.EOF
	}
	k := copy(p, s.block[s.off%int64(len(s.block)):])
	k = int(min(int64(k), s.n-s.off))
	s.off += int64(k)
	return k, nil
}

// heapPeak samples the heap's live-object bytes until stopped.
type heapPeak struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak atomic.Uint64
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	h.wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if v := heapObjects(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	})
	return h
}

func (h *heapPeak) done() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load()
}

// A 1 GiB document is deposited and downloaded with the heap growing by less
// than 64 MiB: content streams, it is never held.
func TestOneGiBDepositAndDownloadKeepHeapBounded(t *testing.T) {
	const size = 1 << 30
	const budget = 64 << 20
	f := newFixture(t)

	runtime.GC()
	base := heapObjects()
	peak := startHeapPeak()
	d, err := f.svc.Deposit(f.ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), newTextStream(size))
	if err != nil {
		peak.done()
		t.Fatal(err)
	}
	depositPeak := peak.done()

	want := sha256.New()
	if _, err := io.Copy(want, newTextStream(size)); err != nil {
		t.Fatal(err)
	}
	if d.Size != size || d.SHA256 != hex.EncodeToString(want.Sum(nil)) {
		t.Fatalf("deposited %d bytes with hash %s", d.Size, d.SHA256)
	}

	runtime.GC()
	base2 := heapObjects()
	peak = startHeapPeak()
	c, err := f.svc.Open(f.ctx, asCitizenA, d.ID, nil)
	if err != nil {
		peak.done()
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, c.Body)
	c.Body.Close()
	downloadPeak := peak.done()
	if err != nil || n != size {
		t.Fatalf("downloaded %d bytes: %v", n, err)
	}

	growth := func(peak, base uint64) uint64 {
		if peak < base {
			return 0
		}
		return peak - base
	}
	dg, rg := growth(depositPeak, base), growth(downloadPeak, base2)
	t.Logf("heap growth: deposit %.1f MiB, download %.1f MiB (budget %d MiB)", float64(dg)/(1<<20), float64(rg)/(1<<20), budget>>20)
	if dg >= budget || rg >= budget {
		t.Fatalf("heap grew by %d (deposit) and %d (download) bytes; budget %d", dg, rg, budget)
	}
	_ = kho.StatusValid
}
