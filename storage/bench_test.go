package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"kho/internal/testenv"
)

var benchSizes = []int64{1 << 20, 64 << 20}

func sizeName(n int64) string { return fmt.Sprintf("%dMiB", n>>20) }

func textBytes(n int64) []byte {
	b, _ := io.ReadAll(newTextStream(n))
	return b
}

// BenchmarkDeposit measures kho's deposit path (sniffing, hashing, age
// encryption, Transit wrap, manifest signature, MinIO put, one transaction);
// BenchmarkRawMinIOPut puts the same bytes with minio-go directly, in the same
// run, for comparison.
func BenchmarkDeposit(b *testing.B) {
	f := newFixture(b)
	for _, n := range benchSizes {
		body := textBytes(n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(n)
			for b.Loop() {
				if _, err := f.svc.Deposit(f.ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRawMinIOPut(b *testing.B) {
	f := newFixture(b)
	s3 := testenv.MinIORoot(b).S3()
	for _, n := range benchSizes {
		body := textBytes(n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(n)
			i := 0
			for b.Loop() {
				i++
				if _, err := s3.PutObject(f.ctx, f.bucket, fmt.Sprintf("%sraw-%d", f.prefix, i), bytes.NewReader(body), n, minio.PutObjectOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDownload measures kho's read path (signature check, binding,
// Transit unwrap, audit event, age decryption, hash check);
// BenchmarkRawMinIOGet reads the same number of bytes with minio-go.
func BenchmarkDownload(b *testing.B) {
	f := newFixture(b)
	for _, n := range benchSizes {
		d, err := f.svc.Deposit(f.ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), newTextStream(n))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(n)
			for b.Loop() {
				c, err := f.svc.Open(f.ctx, asCitizenA, d.ID, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, c.Body); err != nil {
					b.Fatal(err)
				}
				c.Body.Close()
			}
		})
	}
}

func BenchmarkRawMinIOGet(b *testing.B) {
	f := newFixture(b)
	s3 := testenv.MinIORoot(b).S3()
	for _, n := range benchSizes {
		name := f.prefix + "raw-get-" + sizeName(n)
		if _, err := s3.PutObject(context.Background(), f.bucket, name, bytes.NewReader(textBytes(n)), n, minio.PutObjectOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(n)
			for b.Loop() {
				obj, err := s3.GetObject(f.ctx, f.bucket, name, minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, obj); err != nil {
					b.Fatal(err)
				}
				obj.Close()
			}
		})
	}
}
