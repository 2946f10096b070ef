package kho

import (
	"context"
	"io"
	"time"
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

// ReaderAtCloser is random access to a stored blob.
type ReaderAtCloser interface {
	io.ReaderAt
	io.Closer
}

// BlobRandomAccess is met by blob stores that can read ranges, for HTTP Range
// downloads without reading from the start.
type BlobRandomAccess interface {
	// OpenAt opens name for random access and returns its size.
	// Errors: ENOTFOUND, EUNAVAILABLE.
	OpenAt(ctx context.Context, name string) (ReaderAtCloser, int64, error)
}

// BlobLister is met by blob stores that can list what they hold, for the
// reconciler that removes objects no document row refers to.
// BlobUploads is met by blob stores whose uploads can be left incomplete
// (an S3 multipart upload whose writer died).
type BlobUploads interface {
	// AbortUpload abandons the incomplete uploads of the named blob.
	AbortUpload(ctx context.Context, name string) error
}

type BlobLister interface {
	// Walk calls fn for each blob whose name starts with prefix, with its
	// last modification time, until fn returns an error.
	Walk(ctx context.Context, prefix string, fn func(name string, modified time.Time) error) error
}
