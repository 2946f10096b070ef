// Package storage is kho's encrypted object store. This file is its MinIO
// adapter: a BlobStore that keeps ciphertext under opaque names in one bucket,
// reached with credentials limited to that bucket.
//
// storage imports the root package only; it is handed its clients by cmd/.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"kho"
	"kho/internal/httpok"
	"kho/internal/idleconn"
)

// MinIOConfig says where the bucket is and how to reach it.
type MinIOConfig struct {
	Endpoint  string // host:port, or an http(s):// URL
	AccessKey string
	SecretKey string
	Bucket    string
	// PartSize bounds the memory one upload of unknown length holds:
	// minio-go buffers one part per upload (default 8 MiB; MinIO's minimum
	// is 5 MiB). Measured here, 8 MiB keeps a 1 GiB deposit's heap growth
	// near 20 MiB (35 MiB at 16 MiB) at no throughput cost beyond noise.
	PartSize uint64
	// WrapTransport, when set, wraps the HTTP transport (metrics).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Timeout bounds how long MinIO may take to start answering a request
	// once it was sent (default 4 s): a frozen MinIO is an outage within
	// seconds, not a request held for minutes.
	Timeout time.Duration
	// IdleTimeout bounds how long a transfer may make no progress at all,
	// neither bytes received nor bytes sent (default 15 s): a MinIO that
	// freezes in the middle of a download or an upload fails the transfer
	// rather than holding it until the request's own deadline.
	IdleTimeout time.Duration
}

// MinIO is a BlobStore over one MinIO bucket.
type MinIO struct {
	client   *minio.Client
	quick    *minio.Client // for calls tried again: half the answer timeout
	core     minio.Core    // over quick
	live     func(context.Context) bool
	bucket   string
	partSize uint64
}

var (
	_ kho.BlobStore        = (*MinIO)(nil)
	_ kho.BlobRandomAccess = (*MinIO)(nil)
	_ kho.BlobLister       = (*MinIO)(nil)
)

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ParseEndpoint splits an endpoint given as host:port or as an http(s) URL
// into minio-go's host and TLS flag.
func ParseEndpoint(endpoint string) (host string, secure bool, err error) {
	if endpoint == "" {
		return "", false, errors.New("endpoint is empty")
	}
	if u, perr := url.Parse(endpoint); perr == nil && (u.Scheme == "http" || u.Scheme == "https") {
		if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return "", false, fmt.Errorf("endpoint %q must be scheme://host:port with no path", endpoint)
		}
		return u.Host, u.Scheme == "https", nil
	}
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return "", false, fmt.Errorf("endpoint %q is neither host:port nor an http(s) URL", endpoint)
	}
	return endpoint, false, nil
}

// NewMinIO validates cfg and makes a client. It does not reach the server;
// call Health for that.
func NewMinIO(cfg MinIOConfig) (*MinIO, error) {
	host, secure, err := ParseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "storage: MinIO endpoint", err)
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, kho.Errorf(kho.EINVALID, "storage: MinIO access key and secret key are required")
	}
	if !bucketRE.MatchString(cfg.Bucket) {
		return nil, kho.Errorf(kho.EINVALID, "storage: bucket name %q is not a valid S3 bucket name", cfg.Bucket)
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 8 << 20
	}
	if cfg.PartSize < 5<<20 {
		return nil, kho.Errorf(kho.EINVALID, "storage: part size must be at least 5 MiB")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 15 * time.Second
	}
	tr.DialContext = idleconn.Dial(&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}, cfg.IdleTimeout)
	// Idle connections go before their wait for an answer that never
	// comes reaches the idle timeout.
	tr.IdleConnTimeout = cfg.IdleTimeout * 2 / 3
	if cfg.Timeout == 0 {
		cfg.Timeout = 4 * time.Second
	}
	newClient := func(headerTimeout time.Duration) (*minio.Client, error) {
		t := tr.Clone()
		t.ResponseHeaderTimeout = headerTimeout
		var rt http.RoundTripper = t
		if cfg.WrapTransport != nil {
			rt = cfg.WrapTransport(t)
		}
		return minio.New(host, &minio.Options{
			Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
			Secure:    secure,
			Transport: rt,
			// One attempt per call: callers decide about retries, and a
			// probe must see an outage at once rather than after
			// minio-go's backoff.
			MaxRetries: 1,
		})
	}
	client, err := newClient(cfg.Timeout)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "storage: MinIO client", err)
	}
	// Calls that may be tried again (a download, a kept upload, a
	// removal) wait half as long per attempt: a timeout is tried again
	// while MinIO answers its liveness probe (a cluster settling after it
	// lost a node), and is an outage at once when it does not (a MinIO
	// that froze), well within Timeout.
	quick, err := newClient(cfg.Timeout / 2)
	if err != nil {
		return nil, kho.WrapError(kho.EINVALID, "storage: MinIO client", err)
	}
	m := &MinIO{client: client, quick: quick, core: minio.Core{Client: quick}, bucket: cfg.Bucket, partSize: cfg.PartSize}
	m.live = liveness(tr.Clone(), secure, host)
	return m, nil
}

// Live reports whether MinIO answers its liveness probe.
func (m *MinIO) Live(ctx context.Context) bool { return m.live(ctx) }

// liveness asks MinIO's unauthenticated liveness endpoint, within 300 ms,
// outside the circuit: whether MinIO answers at all.
func liveness(tr *http.Transport, secure bool, host string) func(context.Context) bool {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	url := scheme + "://" + host + "/minio/health/live"
	c := &http.Client{Transport: tr}
	return func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		return httpok.Get(ctx, c, url)
	}
}

// Bucket returns the bucket's name.
func (m *MinIO) Bucket() string { return m.bucket }

// Health checks that the bucket exists and the credentials may use it.
func (m *MinIO) Health(ctx context.Context) error {
	ok, err := m.client.BucketExists(ctx, m.bucket)
	if err != nil {
		return kho.WrapError(kho.EUNAVAILABLE, "storage: MinIO not reachable", err)
	}
	if !ok {
		return kho.Errorf(kho.EUNAVAILABLE, "storage: bucket %s does not exist", m.bucket)
	}
	return nil
}

var objectNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/_.-]{0,254}$`)

func checkName(name string) error {
	if !objectNameRE.MatchString(name) {
		return kho.Errorf(kho.EINVALID, "storage: object name is not an opaque identifier")
	}
	return nil
}

// Put streams r into the bucket under name.
func (m *MinIO) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	client := m.client
	if rw, ok := r.(rewinder); ok && rw.Kept() {
		client = m.quick
	}
	// Not after a timeout: MinIO may still be writing the object under
	// that name, and holds its lock; the deposit tries a new name
	// (Service.storeAgain).
	again := newRetry(nil)
	for {
		_, err := client.PutObject(ctx, m.bucket, name, r, size, minio.PutObjectOptions{
			ContentType: "application/octet-stream",
			PartSize:    m.partSize,
			// age authenticates every chunk, and the content is hashed on
			// its way in: signing the payload again would cost a SHA-256
			// pass here and another in MinIO, and protect nothing more.
			DisableContentSha256: true,
		})
		if err == nil {
			return nil
		}
		// A body kept whole (a look-ahead document) is sent again when
		// the upload failed on its way; a streamed one cannot be.
		rw, ok := r.(rewinder)
		if !ok || client != m.quick || !again.again(ctx, err) {
			return mapErr("put object", err)
		}
		if r, ok = rw.Again(); !ok {
			return mapErr("put object", err)
		}
	}
}

// Get opens the object. A missing object gives ENOTFOUND at once rather than
// on the first read. It is one GET: minio-go's Object would send a HEAD
// first to learn the size, which cost MinIO as much as the GET itself.
func (m *MinIO) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	body, info, err := m.getFrom(ctx, name, 0, "")
	if err != nil {
		return nil, mapErr("get object", err)
	}
	return &objectReader{ctx: ctx, m: m, name: name, etag: info.ETag, r: body, size: info.Size}, nil
}

// getFrom opens the object from byte off (of the version with etag, when
// given), trying again after a transient failure.
func (m *MinIO) getFrom(ctx context.Context, name string, off int64, etag string) (io.ReadCloser, minio.ObjectInfo, error) {
	opts := minio.GetObjectOptions{}
	if off > 0 {
		if err := opts.SetRange(off, 0); err != nil {
			return nil, minio.ObjectInfo{}, err
		}
	}
	if etag != "" {
		if err := opts.SetMatchETag(etag); err != nil {
			return nil, minio.ObjectInfo{}, err
		}
	}
	again := newRetry(m.live)
	for {
		body, info, _, err := m.core.GetObject(ctx, m.bucket, name, opts)
		if err == nil || !again.again(ctx, err) {
			return body, info, err
		}
	}
}

// objectReader tells a transfer that failed from an object that is wrong:
// an error while reading, or an end before the length MinIO announced, is
// an outage (EUNAVAILABLE), never data to judge. Bytes that arrive whole
// and are wrong are for the decryption and the hash to find.
//
// A transfer that breaks on its way (the node serving it died) goes on
// from where it broke, from the same version of the object (its ETag), up
// to twice.
type objectReader struct {
	ctx     context.Context
	m       *MinIO
	name    string
	etag    string
	resumed int
	r       io.ReadCloser
	n, size int64
}

func (o *objectReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.n += int64(n)
	if o.n < o.size && (err == io.EOF || transient(o.ctx, err)) && o.resume() {
		if n > 0 {
			return n, nil
		}
		return o.Read(p)
	}
	switch {
	case err == io.EOF && o.n < o.size:
		return n, kho.Unavailable(kho.DependencyMinIO, fmt.Sprintf("storage: the object's transfer ended after %d of %d bytes", o.n, o.size), nil)
	case err != nil && err != io.EOF && kho.ErrorCode(err) == kho.EINTERNAL:
		return n, mapErr("read object", err)
	}
	return n, err
}

// resume reopens the object at the first byte not yet read.
func (o *objectReader) resume() bool {
	if o.resumed == callAttempts-1 || o.m == nil || o.etag == "" {
		return false
	}
	o.resumed++
	body, _, err := o.m.getFrom(o.ctx, o.name, o.n, o.etag)
	if err != nil {
		return false
	}
	o.r.Close()
	o.r = body
	return true
}

func (o *objectReader) Close() error { return o.r.Close() }

// objectReaderAt is objectReader for ranged reads.
type objectReaderAt struct {
	*minio.Object
}

func (o objectReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.Object.ReadAt(p, off)
	if err != nil && err != io.EOF && kho.ErrorCode(err) == kho.EINTERNAL {
		return n, mapErr("read object", err)
	}
	return n, err
}

// OpenAt opens the object for random access; each ReadAt is a ranged GET.
func (m *MinIO) OpenAt(ctx context.Context, name string) (kho.ReaderAtCloser, int64, error) {
	if err := checkName(name); err != nil {
		return nil, 0, err
	}
	obj, err := m.client.GetObject(ctx, m.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, mapErr("get object", err)
	}
	st, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, 0, mapErr("get object", err)
	}
	return objectReaderAt{obj}, st.Size, nil
}

// Walk lists the objects under prefix.
func (m *MinIO) Walk(ctx context.Context, prefix string, fn func(name string, modified time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for obj := range m.client.ListObjects(ctx, m.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return mapErr("list objects", obj.Err)
		}
		if err := fn(obj.Key, obj.LastModified); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// AbortUpload abandons the named object's incomplete multipart uploads:
// what a khod that died mid-deposit left behind.
func (m *MinIO) AbortUpload(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return m.idempotent(ctx, "abort incomplete upload", func(c *minio.Client) error {
		return c.RemoveIncompleteUpload(ctx, m.bucket, name)
	})
}

// idempotent runs a call that may be repeated (a removal) with the quick
// client, tried again after transient failures.
func (m *MinIO) idempotent(ctx context.Context, op string, call func(*minio.Client) error) error {
	again := newRetry(m.live)
	for {
		err := call(m.quick)
		if err == nil {
			return nil
		}
		if !again.again(ctx, err) {
			return mapErr(op, err)
		}
	}
}

// Delete removes the object.
func (m *MinIO) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return m.idempotent(ctx, "delete object", func(c *minio.Client) error {
		return c.RemoveObject(ctx, m.bucket, name, minio.RemoveObjectOptions{})
	})
}

func mapErr(op string, err error) error {
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey":
		return kho.WrapError(kho.ENOTFOUND, "storage: object not found", err)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		// kho's own credentials refused: an outage of kho's, not the
		// caller's fault.
		return kho.Unavailable(kho.DependencyMinIO, "storage: "+op+": MinIO refused kho's credentials", err)
	}
	return kho.Unavailable(kho.DependencyMinIO, "storage: "+op, err)
}
