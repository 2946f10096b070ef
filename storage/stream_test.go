package storage

import (
	"bytes"
	"crypto/rand"
	"io"
	"runtime"
	"strings"
	"testing"

	"filippo.io/age"
)

// The in-place reader reads what age writes exactly as age's own reader
// does, and refuses what age refuses: a changed byte, a file cut anywhere,
// bytes after the end, a chunk dropped or repeated.
func TestOpenReaderAgreesWithAge(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	encrypt := func(plain []byte) []byte {
		var b bytes.Buffer
		w, err := age.Encrypt(&b, id.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		return b.Bytes()
	}
	readAll := func(ct []byte) ([]byte, error) {
		r, err := decrypt(bytes.NewReader(ct), id)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	for _, n := range []int{0, 1, 100, ageChunk - 1, ageChunk, ageChunk + 1, 2 * ageChunk, 3*ageChunk + 17, 1<<20 + 3} {
		plain := make([]byte, n)
		rand.Read(plain)
		ct := encrypt(plain)
		got, err := readAll(ct)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: %v (read %d)", n, err, len(got))
		}
		// The payload's length is what deposits announce to the store.
		hdr := bytes.Index(ct, []byte("\n---"))
		hdrEnd := hdr + 1 + bytes.IndexByte(ct[hdr+1:], '\n') + 1
		if want := encryptedSize(int64(n)) + 16; int64(len(ct)-hdrEnd) != want {
			t.Fatalf("%d bytes: payload is %d bytes, encryptedSize says %d", n, len(ct)-hdrEnd, want)
		}
		if n == 0 {
			continue
		}
		refuse := func(what string, bad []byte) {
			t.Helper()
			_, ageErr := func() ([]byte, error) {
				r, err := age.Decrypt(bytes.NewReader(bad), id)
				if err != nil {
					return nil, err
				}
				return io.ReadAll(r)
			}()
			got, err := readAll(bad)
			if err == nil {
				t.Errorf("%d bytes, %s: read %d bytes without an error", n, what, len(got))
			}
			if ageErr == nil {
				t.Errorf("%d bytes, %s: age accepts it", n, what)
			}
		}
		for _, at := range []int{hdrEnd + 3, hdrEnd + 16 + 5, len(ct) - 1, len(ct) / 2} {
			bad := bytes.Clone(ct)
			bad[at] ^= 1
			refuse("a byte changed", bad)
		}
		for _, cut := range []int{hdrEnd, hdrEnd + 10, hdrEnd + 16, hdrEnd + 16 + encChunk, len(ct) - 1, hdr} {
			if cut < len(ct) {
				refuse("cut short", ct[:cut])
			}
		}
		refuse("bytes after the end", append(bytes.Clone(ct), 'x'))
		if n > 2*ageChunk {
			p := hdrEnd + 16
			dropped := append(bytes.Clone(ct[:p]), ct[p+encChunk:]...)
			refuse("a chunk dropped", dropped)
			repeated := append(append(bytes.Clone(ct[:p+encChunk]), ct[p:p+encChunk]...), ct[p+encChunk:]...)
			refuse("a chunk repeated", repeated)
		}
	}
	if _, err := readAll([]byte(strings.Repeat("x", 100))); err == nil {
		t.Error("a file that is not age was read")
	}
}

// Reading allocates nothing per chunk: the buffers are reused.
func TestOpenReaderAllocations(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	var b bytes.Buffer
	w, _ := age.Encrypt(&b, id.Recipient())
	w.Write(make([]byte, 4<<20))
	w.Close()
	ct := b.Bytes()
	buf := make([]byte, 256<<10)
	read := func() {
		r, err := decrypt(bytes.NewReader(ct), id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	read()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 20
	for i := 0; i < runs; i++ {
		read()
	}
	runtime.ReadMemStats(&after)
	// The header's parse and the key's unwrap allocate a few KiB per
	// file; age's reader allocated 64 KiB a chunk, 1 MiB per MiB.
	if perMiB := float64(after.TotalAlloc-before.TotalAlloc) / runs / 4; perMiB > 8<<10 {
		t.Fatalf("%.0f bytes allocated per MiB read", perMiB)
	}
}

// BenchmarkDecryptStream reads a 1 MiB document's ciphertext as downloads
// do (header, key unwrap with a local X25519 identity, payload), beside
// age's own reader.
func BenchmarkDecryptStream(b *testing.B) {
	id, _ := age.GenerateX25519Identity()
	var buf bytes.Buffer
	w, _ := age.Encrypt(&buf, id.Recipient())
	w.Write(make([]byte, 1<<20))
	w.Close()
	ct := buf.Bytes()
	out := make([]byte, 256<<10)
	b.Run("kho", func(b *testing.B) {
		b.SetBytes(1 << 20)
		b.ReportAllocs()
		for b.Loop() {
			r, err := decrypt(bytes.NewReader(ct), id)
			if err != nil {
				b.Fatal(err)
			}
			io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, out)
			r.Close()
		}
	})
	b.Run("age", func(b *testing.B) {
		b.SetBytes(1 << 20)
		b.ReportAllocs()
		for b.Loop() {
			r, err := age.Decrypt(bytes.NewReader(ct), id)
			if err != nil {
				b.Fatal(err)
			}
			io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, out)
		}
	})
}
