package storage

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"io"
	"sync"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	"kho"
)

// openReader reads an age file as age.Decrypt does, but decrypts each
// payload chunk in place, in a buffer reused from one download to the
// next, and reads the object in large pieces: age's own reader allocates
// 64 KiB a chunk (a megabyte of garbage per megabyte served) and copies
// every chunk once more.
//
// The header is parsed, its MAC checked and the file key unwrapped by age
// itself (age.DecryptHeader with kho's identity); only the payload's STREAM
// construction (age-encryption.org/v1: HKDF-SHA-256 of the file key and the
// 16-byte nonce, then ChaCha20-Poly1305 over 64 KiB chunks with a counter
// nonce whose last byte marks the final chunk) is done here, and it is
// checked against age's reader in stream_test.go, tampering and truncation
// included.
type openReader struct {
	src    *bufio.Reader
	aead   cipher.AEAD
	nonce  [chacha20poly1305.NonceSize]byte
	buf    *[]byte // one encrypted chunk, decrypted in place
	unread []byte
	last   bool
	err    error
	free   func()
}

const (
	encChunk    = ageChunk + chacha20poly1305.Overhead
	maxHeader   = 64 << 10 // kho's headers are one stanza: well under 1 KiB
	objectReads = 256 << 10
)

var (
	chunkBuffers = sync.Pool{New: func() any { b := make([]byte, encChunk); return &b }}
	readBuffers  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, objectReads) }}
)

var errTampered = errors.New("failed to decrypt and authenticate payload chunk, file may be corrupted or tampered with")

// decrypt opens src, an age file, with ident. Errors from the header are
// age's, for ageError to classify; errors reading src pass through.
func decrypt(src io.Reader, ident age.Identity) (*openReader, error) {
	br := readBuffers.Get().(*bufio.Reader)
	br.Reset(src)
	release := func() { br.Reset(nil); readBuffers.Put(br) }
	header, err := readHeader(br)
	if err != nil {
		release()
		return nil, err
	}
	fileKey, err := age.DecryptHeader(header, ident)
	if err != nil {
		release()
		return nil, err
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(br, nonce); err != nil {
		release()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, errors.New("failed to read nonce: the file is truncated")
		}
		return nil, err
	}
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, fileKey, nonce, []byte("payload")), key); err != nil {
		release()
		return nil, err
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		release()
		return nil, err
	}
	buf := chunkBuffers.Get().(*[]byte)
	r := &openReader{src: br, aead: aead, buf: buf}
	r.free = func() { release(); chunkBuffers.Put(buf) }
	return r, nil
}

// readHeader reads the header's lines up to and including the MAC line
// ("--- "), which ends it.
func readHeader(br *bufio.Reader) ([]byte, error) {
	var header []byte
	for {
		line, err := br.ReadSlice('\n')
		header = append(header, line...)
		if err != nil {
			if err == io.EOF || err == bufio.ErrBufferFull {
				return nil, errors.New("failed to read header: malformed or truncated")
			}
			return nil, err
		}
		if len(header) > maxHeader {
			return nil, errors.New("failed to read header: too long")
		}
		if bytes.HasPrefix(line, []byte("---")) {
			return header, nil
		}
	}
}

func (r *openReader) Read(p []byte) (int, error) {
	for len(r.unread) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.last {
			r.err = io.EOF
			return 0, io.EOF
		}
		if err := r.readChunk(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.unread)
	r.unread = r.unread[n:]
	return n, nil
}

// readChunk reads, authenticates and decrypts the next chunk in place.
func (r *openReader) readChunk() error {
	in := (*r.buf)[:encChunk]
	n, err := io.ReadFull(r.src, in)
	switch {
	case err == io.EOF:
		// A file cannot end without a chunk marked last: truncated.
		return io.ErrUnexpectedEOF
	case err == io.ErrUnexpectedEOF:
		// The last chunk may be short; empty only as the only chunk.
		if !nonceIsZero(&r.nonce) && n == chacha20poly1305.Overhead {
			return errTampered
		}
		in, r.last = in[:n], true
		r.nonce[len(r.nonce)-1] = 1
	case err != nil:
		return err
	default:
		// A full chunk is the last one when the file ends with it (age
		// tries both nonces; a failed Open here would have overwritten the
		// chunk, which is decrypted in place).
		if _, err := r.src.Peek(1); err == io.EOF {
			r.last = true
			r.nonce[len(r.nonce)-1] = 1
		} else if err != nil {
			return err
		}
	}
	out, err := r.aead.Open(in[:0], r.nonce[:], in, nil)
	if err != nil {
		return errTampered
	}
	if r.last {
		// Nothing may follow the last chunk.
		var one [1]byte
		if m, err := r.src.Read(one[:]); m > 0 || (err != nil && err != io.EOF) {
			if err != nil && err != io.EOF {
				return err
			}
			return errors.New("trailing data after end of encrypted file")
		}
	} else {
		incNonce(&r.nonce)
	}
	r.unread = out
	return nil
}

// Close gives the buffers back; the reader must not be used after.
func (r *openReader) Close() error {
	if r.free != nil {
		r.free()
		r.free = nil
		r.unread, r.err = nil, kho.Errorf(kho.EINTERNAL, "storage: read after close")
	}
	return nil
}

func nonceIsZero(n *[chacha20poly1305.NonceSize]byte) bool {
	return *n == [chacha20poly1305.NonceSize]byte{}
}

func incNonce(n *[chacha20poly1305.NonceSize]byte) {
	for i := len(n) - 2; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			return
		}
	}
	panic("storage: chunk counter wrapped around")
}
