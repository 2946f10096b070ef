package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"testing"

	"kho"
	"kho/audit"
	"kho/internal/testenv"
	"kho/storage"
)

// cutOnceDocuments is a documents service whose MinIO connection goes
// through a proxy that, once armed, cuts one connection after limit bytes
// and lets the next through: the node serving a transfer died, the
// balancer sends the next connection to one that lives.
func cutOnceDocuments(t *testing.T, limit int64) (*testenv.Documents, *cuttingProxy) {
	st := testenv.Stack(t)
	var proxy *cuttingProxy
	docs := testenv.NewDocuments(t, func(c *storage.Config) {
		proxy = newCuttingProxy(t, st.MinIOEndpoint, limit)
		proxy.once = true
		m, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: proxy.ln.Addr().String(), AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: st.MinIOBucket})
		if err != nil {
			t.Fatal(err)
		}
		c.Blobs = m
	})
	return docs, proxy
}

// readAll reads a document whole as its owner.
func readAll(ctx context.Context, docs *testenv.Documents, id kho.DocumentID) ([]byte, error) {
	c, err := docs.Svc.Open(ctx, asCitizenA, id, nil)
	if err != nil {
		return nil, err
	}
	defer c.Body.Close()
	return io.ReadAll(c.Body)
}

func textOf(n int) []byte {
	raw := make([]byte, n/2)
	_, _ = rand.Read(raw)
	return []byte(hex.EncodeToString(raw))
}

// A download whose connection dies half-way goes on from the byte it
// reached, on a new connection: the reader gets the whole document, and
// nothing is reported as tampering.
func TestDownloadCutOnceResumes(t *testing.T) {
	ctx := testenv.Context(t)
	docs, proxy := cutOnceDocuments(t, 512<<10)
	content := textOf(3 << 20)
	doc, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	proxy.passed.Store(0)
	proxy.armed.Store(true)
	if got, err := readAll(ctx, docs, doc.ID); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("a download cut once: %v, %d of %d bytes", err, len(got), len(content))
	}
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1: the test did not test", proxy.cuts.Load())
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE document_id = $1 AND action = $2`, doc.ID, audit.DocumentIntegrity).Scan(&n); err != nil || n != 0 {
		t.Fatalf("integrity failures recorded for an intact document: %d %v", n, err)
	}
}

// A deposit whose upload dies half-way is sent again, whole, on a new
// connection, when the document was held within the look-ahead: one
// document, which reads back byte-exact.
func TestUploadCutOnceIsSentAgain(t *testing.T) {
	ctx := testenv.Context(t)
	docs, proxy := cutOnceDocuments(t, 1<<20)
	content := textOf(3 << 20)
	proxy.armed.Store(true)
	doc, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader(content))
	if err != nil {
		t.Fatalf("a deposit whose upload was cut once: %v", err)
	}
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1: the test did not test", proxy.cuts.Load())
	}
	if got, err := readAll(ctx, docs, doc.ID); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read back: %v, %d of %d bytes", err, len(got), len(content))
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d documents after one deposit: %v", n, err)
	}
}

// A document larger than the look-ahead streams from the caller and is not
// kept: an upload cut half-way cannot be sent again, and the deposit is an
// outage for the caller to retry (under its Idempotency-Key), never a
// half-stored document.
func TestStreamedUploadCutOnceIsAnOutage(t *testing.T) {
	ctx := testenv.Context(t)
	docs, proxy := cutOnceDocuments(t, 1<<20)
	proxy.armed.Store(true)
	_, err := docs.Svc.Deposit(ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader(textOf(6<<20)))
	if kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("a streamed deposit cut half-way: %v, want unavailable", err)
	}
	var n int
	if err := docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d documents after a failed deposit: %v", n, err)
	}
}
