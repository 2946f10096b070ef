package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"kho"
	"kho/audit"
	"kho/breaker"
	"kho/internal/testenv"
	"kho/storage"
)

// cuttingProxy passes TCP to MinIO and, once armed, drops every connection
// after it has carried limit more bytes from MinIO: a MinIO killed or a
// network lost in the middle of a download.
type cuttingProxy struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	once   bool // disarm after the first cut: one node lost, the next connection reaches another
	cuts   atomic.Int64
	frozen atomic.Bool // a MinIO that stops answering, connections kept
	closed atomic.Bool
	passed atomic.Int64
	limit  int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func (p *cuttingProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *cuttingProxy) close() {
	p.closed.Store(true)
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func newCuttingProxy(t *testing.T, target string, limit int64) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, limit: limit}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *cuttingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer s.Close()
			p.track(c)
			p.track(s)
			go p.pipe(c, s)
			p.pipe(s, c)
		}()
	}
}

// waitThawed holds a copy while the proxy is frozen.
func (p *cuttingProxy) waitThawed() {
	for p.frozen.Load() && !p.closed.Load() {
		time.Sleep(10 * time.Millisecond)
	}
}

// pipe copies from one side to the other until either ends or, once
// armed, the proxy has carried its limit in both directions together.
func (p *cuttingProxy) pipe(to, from net.Conn) {
	defer to.Close()
	defer from.Close()
	buf := make([]byte, 32<<10)
	for {
		p.waitThawed()
		n, err := from.Read(buf)
		p.waitThawed()
		if n > 0 {
			if p.armed.Load() && p.passed.Add(int64(n)) > p.limit {
				p.cuts.Add(1)
				if p.once {
					p.armed.Store(false)
				}
				return // the connection dies mid-transfer
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A download cut off by the network is an outage, not tampering: the
// reader fails with EUNAVAILABLE, no integrity failure is recorded, and
// the same document reads back whole once the network is back.
func TestCutDownloadIsAnOutageNotTampering(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	var proxy *cuttingProxy
	docs := testenv.NewDocuments(t, func(c *storage.Config) {
		proxy = newCuttingProxy(t, st.MinIOEndpoint, 512<<10)
		m, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: proxy.ln.Addr().String(), AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: st.MinIOBucket})
		if err != nil {
			t.Fatal(err)
		}
		c.Blobs = m
	})
	raw := make([]byte, 3<<19)
	_, _ = rand.Read(raw)
	content := []byte(hex.EncodeToString(raw)) // 3 MiB of text
	doc, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}

	proxy.armed.Store(true)
	c, err := docs.Svc.Open(ctx, asCitizenA, doc.ID, nil)
	if err == nil {
		_, err = io.Copy(io.Discard, c.Body)
		c.Body.Close()
	}
	if kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("a download cut by the network: %v, want unavailable", err)
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE document_id = $1 AND action = $2`, doc.ID, audit.DocumentIntegrity).Scan(&n); err != nil || n != 0 {
		t.Fatalf("integrity failures recorded for an intact document: %d %v", n, err)
	}

	proxy.armed.Store(false)
	c, err = docs.Svc.Open(ctx, asCitizenA, doc.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Body.Close()
	got, err := io.ReadAll(c.Body)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("after the network came back: %v (%d bytes)", err, len(got))
	}
}

// A deposit whose upload to MinIO is cut is an outage (503 for the
// caller, who may retry), not a document the caller got wrong; nothing is
// left recorded for it.
func TestCutUploadIsAnOutage(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	var proxy *cuttingProxy
	docs := testenv.NewDocuments(t, func(c *storage.Config) {
		proxy = newCuttingProxy(t, st.MinIOEndpoint, 0)
		m, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: proxy.ln.Addr().String(), AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: st.MinIOBucket})
		if err != nil {
			t.Fatal(err)
		}
		c.Blobs = m
	})
	proxy.armed.Store(true)
	raw := make([]byte, 3<<19)
	_, _ = rand.Read(raw)
	_, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader([]byte(hex.EncodeToString(raw))))
	if kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("a deposit MinIO never answered: %v, want unavailable", err)
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d documents recorded after a failed deposit: %v", n, err)
	}
}

// A khod that dies mid-deposit leaves an incomplete multipart upload,
// which MinIO lists only by the object's exact name: the deposit recorded
// that name before the upload began, so reconciling finds the upload and
// abandons it once past the grace period, and leaves a recent one (a
// deposit still under way) alone.
func TestReconcileAbandonsIncompleteUploads(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	var proxy *cuttingProxy
	docs := testenv.NewDocuments(t, func(c *storage.Config) {
		proxy = newCuttingProxy(t, st.MinIOEndpoint, 1<<20)
		m, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: proxy.ln.Addr().String(), AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: st.MinIOBucket})
		if err != nil {
			t.Fatal(err)
		}
		c.Blobs = m
	})
	// A 20 MiB deposit: its first part lands, then MinIO stops answering
	// (as if khod died): the upload stays incomplete.
	proxy.armed.Store(true)
	raw := make([]byte, 10<<20)
	_, _ = rand.Read(raw)
	if _, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader([]byte(hex.EncodeToString(raw)))); err == nil {
		t.Fatal("the deposit succeeded through a dead connection")
	}
	proxy.armed.Store(false)
	var name string
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT object_name FROM pending_objects`).Scan(&name); err != nil {
		t.Fatalf("the unfinished upload was not recorded: %v", err)
	}
	core := minio.Core{Client: testenv.MinIORoot(t).S3()}
	pending := func() int {
		n := 0
		for u := range core.ListIncompleteUploads(ctx, st.MinIOBucket, name, true) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			n++
		}
		return n
	}
	if pending() != 1 {
		t.Fatal("no incomplete upload was left")
	}
	if n, err := docs.Svc.Reconcile(ctx, time.Hour); err != nil || n != 0 || pending() != 1 {
		t.Fatalf("within the grace period: %d %v, %d pending", n, err, pending())
	}
	if n, err := docs.Svc.Reconcile(ctx, 0); err != nil || n != 1 || pending() != 0 {
		t.Fatalf("after it: %d %v, %d pending", n, err, pending())
	}
	var rows int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM pending_objects`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("pending rows after reconciling: %d %v", rows, err)
	}
}

// erasingKeys is the real Vault key store, with a hook that runs once
// just before a file key is unwrapped: the moment a reader has read the
// document's row but not yet its key.
type erasingKeys struct {
	kho.SubjectKeys
	before func()
}

func (k *erasingKeys) Unwrap(ctx context.Context, h kho.SubjectHandle, wrapped string, ad []byte) ([]byte, error) {
	if f := k.before; f != nil {
		k.before = nil
		f()
	}
	return k.SubjectKeys.Unwrap(ctx, h, wrapped, ad)
}

// A read that races the store's erasure finds the key gone: that is the
// erasure, not tampering. The reader is told the document is not there,
// and no integrity failure is recorded.
func TestReadRacingErasureIsNotTampering(t *testing.T) {
	keys := &erasingKeys{}
	docs := testenv.NewDocuments(t, func(c *storage.Config) {
		keys.SubjectKeys = c.Keys
		c.Keys = keys
	})
	ctx := testenv.Context(t)
	doc, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), strings.NewReader("GIẤY KHAI SINH — sắp xoá"))
	if err != nil {
		t.Fatal(err)
	}
	keys.before = func() {
		if _, err := docs.Svc.Erase(ctx, asCitizenA, doc.Subject); err != nil {
			t.Errorf("erase: %v", err)
		}
	}
	if _, err := docs.Svc.Open(ctx, asCitizenA, doc.ID, nil); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("a read racing the erasure: %v, want not found", err)
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = $1`, audit.DocumentIntegrity).Scan(&n); err != nil || n != 0 {
		t.Fatalf("integrity failures recorded: %d %v", n, err)
	}
}

// A frozen MinIO (connections open, nothing answered) fails a download
// mid-transfer and the requests after it as outages, never tampering;
// after a run of failures the circuit opens and calls are refused without
// waiting; once MinIO answers again, the next probe closes it and reads
// work, with nothing done on khod.
func TestFrozenMinIOIsRefusedFastAndRecovers(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	var proxy *cuttingProxy
	brk := breaker.New("minio", 3, time.Second)
	docs := testenv.NewDocuments(t, func(c *storage.Config) {
		proxy = newCuttingProxy(t, st.MinIOEndpoint, 0)
		m, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: proxy.ln.Addr().String(), AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey,
			// Short bounds, so the freeze is seen soon, yet long enough for
			// the 32 MiB deposit's parts to be answered on a busy disk.
			Bucket: st.MinIOBucket, Timeout: 4 * time.Second, IdleTimeout: 4 * time.Second, WrapTransport: brk.Transport})
		if err != nil {
			t.Fatal(err)
		}
		c.Blobs = m
	})
	content := bytes.Repeat([]byte("Giấy khai sinh bản sao. "), 1_300_000) // ~32 MiB: more than the buffers on the way hold
	doc, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}

	// Frozen in the middle of a download: the transfer fails (idle
	// timeout), as an outage.
	c, err := docs.Svc.Open(ctx, asCitizenA, doc.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	proxy.frozen.Store(true)
	_, err = io.Copy(io.Discard, c.Body)
	c.Body.Close()
	if kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("download from a MinIO frozen mid-transfer: %v, want unavailable", err)
	}
	// Requests while it stays frozen: outages, until the circuit opens and
	// they are refused before reaching it.
	opened := false
	for i := 0; i < 6 && !opened; i++ {
		_, err := docs.Svc.Open(ctx, asCitizenA, doc.ID, nil)
		if kho.ErrorCode(err) != kho.EUNAVAILABLE || kho.ErrorDependency(err) != kho.DependencyMinIO {
			t.Fatalf("read from a frozen MinIO: %v (dependency %q), want a MinIO outage", err, kho.ErrorDependency(err))
		}
		opened = breaker.IsOpen(err)
	}
	if !opened {
		t.Fatal("the circuit never opened on a frozen MinIO")
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE document_id = $1 AND action = $2`, doc.ID, audit.DocumentIntegrity).Scan(&n); err != nil || n != 0 {
		t.Fatalf("integrity failures recorded for an intact document: %d %v", n, err)
	}

	proxy.frozen.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := docs.Svc.Open(ctx, asCitizenA, doc.ID, nil)
		if err == nil {
			got, err := io.ReadAll(c.Body)
			c.Body.Close()
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("after MinIO came back: %v (%d bytes)", err, len(got))
			}
			break
		}
		if kho.ErrorCode(err) != kho.EUNAVAILABLE || time.Now().After(deadline) {
			t.Fatalf("MinIO back, reads still fail: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if open, _ := brk.State(); open {
		t.Fatal("the circuit stayed open after a successful read")
	}
}
