package kho

import (
	"context"
	"io"
)

// BlobStore keeps opaque byte streams under opaque names. It never interprets
// what it stores: kho hands it ciphertext only, and names that carry no
// personal data. The MinIO adapter in package storage meets it.
type BlobStore interface {
	HealthChecker

	// Put stores r under name. size is the exact length, or -1 when unknown
	// (the adapter then streams in bounded parts). Errors: EUNAVAILABLE,
	// EINVALID (bad name).
	Put(ctx context.Context, name string, r io.Reader, size int64) error

	// Get opens the blob for reading. Errors: ENOTFOUND, EUNAVAILABLE.
	Get(ctx context.Context, name string) (io.ReadCloser, error)

	// Delete removes the blob; removing a missing blob is not an error.
	// Errors: EUNAVAILABLE.
	Delete(ctx context.Context, name string) error
}
