package storage_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"kho"
	"kho/internal/testenv"
	"kho/storage"
)

var _ kho.BlobStore = (*storage.MinIO)(nil)

func TestMinIORoundTrip(t *testing.T) {
	blobs := testenv.KhodBlobs(t)
	ctx := testenv.Context(t)
	if err := blobs.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	prefix := testenv.Name("t-")
	payload := make([]byte, 6<<20+123) // more than one 5 MiB part when the size is unknown
	_, _ = rand.Read(payload)

	tests := []struct {
		name string
		size int64
	}{
		{"ok/known size", int64(len(payload))},
		{"ok/unknown size streams in parts", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := prefix + "/" + testenv.Name("o")
			t.Cleanup(func() { _ = blobs.Delete(ctx, name) })
			// A reader without Len/Seek: the adapter must stream.
			if err := blobs.Put(ctx, name, io.MultiReader(bytes.NewReader(payload)), tt.size); err != nil {
				t.Fatalf("put: %v", err)
			}
			rc, err := blobs.Get(ctx, name)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("read back %d bytes (err %v), want %d identical", len(got), err, len(payload))
			}
			if err := blobs.Delete(ctx, name); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := blobs.Get(ctx, name); kho.ErrorCode(err) != kho.ENOTFOUND {
				t.Fatalf("get after delete: %v, want not_found", err)
			}
			if err := blobs.Delete(ctx, name); err != nil {
				t.Fatalf("deleting a missing object: %v", err)
			}
		})
	}
}

func TestMinIORejectsNamesThatCouldCarryData(t *testing.T) {
	blobs := testenv.KhodBlobs(t)
	ctx := testenv.Context(t)
	for _, name := range []string{"", "../escape", "/abs", "name with space", "Nguyễn", strings.Repeat("a", 300)} {
		if err := blobs.Put(ctx, name, strings.NewReader("x"), 1); kho.ErrorCode(err) != kho.EINVALID {
			t.Errorf("Put(%q) = %v, want invalid", name, err)
		}
	}
}

// khod's MinIO user reaches its own bucket and nothing else.
func TestKhodCredentialsAreLimitedToTheBucket(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	root := testenv.MinIORoot(t)
	other := testenv.Name("kho-other-")
	if err := root.EnsureBucket(ctx, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = root.S3().RemoveObject(ctx, other, "secret", minio.RemoveObjectOptions{})
		_ = root.S3().RemoveBucket(ctx, other)
	})
	if _, err := root.S3().PutObject(ctx, other, "secret", strings.NewReader("not for khod"), 12, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	khodOther, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: st.MinIOEndpoint, AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: other})
	if err != nil {
		t.Fatal(err)
	}
	// MinIO refuses; for kho's callers that is an outage (503), not
	// their fault.
	refused := func(err error) bool {
		return kho.ErrorCode(err) == kho.EUNAVAILABLE && minio.ToErrorResponse(errors.Unwrap(err)).Code == "AccessDenied"
	}
	if _, err := khodOther.Get(ctx, "secret"); !refused(err) {
		t.Errorf("khod read another bucket: %v, want refused", err)
	}
	if err := khodOther.Put(ctx, "planted", strings.NewReader("x"), 1); !refused(err) {
		t.Errorf("khod wrote another bucket: %v, want refused", err)
	}
	if err := khodOther.Health(ctx); err == nil {
		t.Errorf("khod can see another bucket")
	}

	// Nor may it create, delete or list buckets, or change policies.
	raw, err := minio.New(st.MinIOEndpoint, &minio.Options{Creds: credentialsOf(st.MinIOAccessKey, st.MinIOSecretKey)})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.MakeBucket(ctx, testenv.Name("kho-new-"), minio.MakeBucketOptions{}); err == nil {
		t.Error("khod created a bucket")
	}
	// MinIO answers a bucket listing with the buckets the user may use.
	if list, err := raw.ListBuckets(ctx); err == nil {
		for _, b := range list {
			if b.Name != st.MinIOBucket {
				t.Errorf("khod sees bucket %s", b.Name)
			}
		}
	}
	if err := raw.RemoveBucket(ctx, st.MinIOBucket); err == nil {
		t.Error("khod removed its bucket")
	}
	if err := raw.SetBucketPolicy(ctx, st.MinIOBucket, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::`+st.MinIOBucket+`/*"]}]}`); err == nil {
		t.Error("khod made its bucket public")
	}
}

func TestNewMinIOValidatesConfig(t *testing.T) {
	good := storage.MinIOConfig{Endpoint: "127.0.0.1:9000", AccessKey: "a", SecretKey: "b", Bucket: "kho-documents"}
	tests := []struct {
		name string
		mod  func(*storage.MinIOConfig)
		ok   bool
	}{
		{"ok/host:port", func(*storage.MinIOConfig) {}, true},
		{"ok/http url", func(c *storage.MinIOConfig) { c.Endpoint = "http://127.0.0.1:9000" }, true},
		{"ok/https url", func(c *storage.MinIOConfig) { c.Endpoint = "https://minio.example:443" }, true},
		{"fail/empty endpoint", func(c *storage.MinIOConfig) { c.Endpoint = "" }, false},
		{"fail/url with path", func(c *storage.MinIOConfig) { c.Endpoint = "http://127.0.0.1:9000/bucket" }, false},
		{"fail/no port", func(c *storage.MinIOConfig) { c.Endpoint = "localhost" }, false},
		{"fail/no secret", func(c *storage.MinIOConfig) { c.SecretKey = "" }, false},
		{"fail/bad bucket", func(c *storage.MinIOConfig) { c.Bucket = "Kho_Docs" }, false},
		{"fail/part size too small", func(c *storage.MinIOConfig) { c.PartSize = 1 << 20 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			_, err := storage.NewMinIO(c)
			if (err == nil) != tt.ok {
				t.Fatalf("NewMinIO = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && kho.ErrorCode(err) != kho.EINVALID {
				t.Errorf("code %s", kho.ErrorCode(err))
			}
		})
	}
}
