package api

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/storage"
)

// Encrypted deliveries come in two forms, both to the agency's registered
// key with ECDH-ES+A256KW and A256GCM:
//
//   - application/jose: one compact JWE (typ kho-delivery+jwe), made in
//     memory, for documents up to maxEncryptedDelivery;
//   - application/vnd.kho.jwe-stream: a stream of compact JWEs, one a line,
//     each holding up to SegmentSize bytes of the document (typ
//     kho-delivery-segment+jwe), for any size; the receiver decrypts as it
//     reads and never holds the whole file.
//
// Either way the (first) protected header, which the encryption
// authenticates, carries the document's description, the issuer's signed
// manifest and the use receipt's id. Encryption to a public key does not
// say who encrypted: the receiver trusts the content because its SHA-256 is
// the one in the manifest the issuer signed.
const (
	DeliveryType         = "kho-delivery+jwe"
	SegmentType          = "kho-delivery-segment+jwe"
	MediaTypeJOSE        = "application/jose"
	MediaTypeJWEStream   = "application/vnd.kho.jwe-stream"
	SegmentSize          = 1 << 20
	maxEncryptedDelivery = 256 << 20
)

// acceptsMedia says whether the Accept header names typ (parameters and
// quality aside; q=0 refuses it).
func acceptsMedia(c *gin.Context, typ string) bool {
	for _, part := range strings.Split(c.GetHeader("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != typ {
			continue
		}
		if q, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(q, 64); err != nil || !(v > 0 && v <= 1) {
				continue
			}
		}
		return true
	}
	return false
}

// wantsEncrypted says whether a fetch for a procedure by another agency is
// delivered encrypted: always when the deployment says so, else when the
// agency asks for one of the encrypted forms.
func (s *Server) wantsEncrypted(c *gin.Context) bool {
	return s.cfg.EncryptDeliveries || acceptsMedia(c, MediaTypeJOSE) || acceptsMedia(c, MediaTypeJWEStream)
}

// deliveryKey is the agency's registered encryption key (the newest
// current one, so a rotation takes effect at once): without one an
// encrypted delivery is refused before any consent is used.
func (s *Server) deliveryKey(ctx context.Context, agency kho.AgencyCode) (jwk.Key, error) {
	if s.cfg.EncryptionKeys == nil {
		return nil, kho.Errorf(kho.EUNAVAILABLE, "encrypted deliveries are not configured")
	}
	set, err := s.cfg.EncryptionKeys(ctx, agency)
	if err != nil {
		return nil, err
	}
	if set.Len() == 0 {
		return nil, kho.Refusal(kho.EINVALID, "no_encryption_key", "agency %s has no encryption key registered: register one with \"use\": \"enc\" and \"alg\": \"ECDH-ES+A256KW\" (kho agency register)", agency)
	}
	k, _ := set.Key(0)
	return k, nil
}

// deliveryHeaders are what the (first) protected header says of the
// document.
func deliveryHeaders(typ string, key jwk.Key, content *storage.Content) map[string]any {
	d := content.Document
	kid, _ := key.KeyID()
	return map[string]any{
		"typ": typ, "cty": d.MediaType, "kid": kid,
		"kho_document": map[string]any{"id": d.ID, "type": d.Type, "sha256": d.SHA256, "media_type": d.MediaType, "size": d.Size,
			"issuer": d.Issuer, "subject": d.Subject, "manifest_signature": "verified"},
		"kho_manifest_jws": content.ManifestJWS,
		"kho_use_receipt":  content.UseReceiptID,
	}
}

func encryptTo(key jwk.Key, plain []byte, fields map[string]any) ([]byte, error) {
	h := jwe.NewHeaders()
	for name, v := range fields {
		if err := h.Set(name, v); err != nil {
			return nil, kho.WrapError(kho.EINTERNAL, "delivery header", err)
		}
	}
	out, err := jwe.Encrypt(plain, jwe.WithKey(jwa.ECDH_ES_A256KW(), key), jwe.WithContentEncryption(jwa.A256GCM()), jwe.WithProtectedHeaders(h), jwe.WithCompact())
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "encrypt the delivery", err)
	}
	return out, nil
}

// deliverEncrypted answers with the document as one compact JWE to the
// agency's key; the caller holds a memory slot.
func (s *Server) deliverEncrypted(c *gin.Context, key jwk.Key, content *storage.Content) {
	plain, err := io.ReadAll(io.LimitReader(content.Body, maxEncryptedDelivery+1))
	if err != nil {
		// Integrity failures were recorded by the reader; nothing partial
		// is ever encrypted and sent.
		writeError(c, err)
		return
	}
	out, err := encryptTo(key, plain, deliveryHeaders(DeliveryType, key, content))
	if err != nil {
		writeError(c, err)
		return
	}
	n := len(plain)
	// The slot is held while the answer is written: an agency that does
	// not read it holds the slot only as long as 1 MiB/s would take.
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(30*time.Second + time.Duration(len(out)>>20)*time.Second))
	s.cfg.Observer.ObserveBytes("served", int64(n))
	c.Data(http.StatusOK, MediaTypeJOSE, out)
}

// deliverStream answers with the document as a stream of encrypted
// segments. Every segment's header names the stream (a random id), its
// sequence number and whether it is the last; the first also carries the
// delivery headers. A stream cut short, reordered or spliced with another
// is refused by the receiver; a read that fails its integrity check
// midway aborts the connection before the last segment.
func (s *Server) deliverStream(c *gin.Context, key jwk.Key, content *storage.Content) {
	idb := make([]byte, 16)
	_, _ = rand.Read(idb)
	stream := hex.EncodeToString(idb)
	kid, _ := key.KeyID()
	buf := make([]byte, SegmentSize)
	// Documents are never empty, so every segment holds content; the
	// look-ahead tells whether a full one is the last.
	body := bufio.NewReader(content.Body)
	var sent int64
	for seq := 0; ; seq++ {
		n, rerr := io.ReadFull(body, buf)
		if rerr == nil {
			_, rerr = body.Peek(1)
		}
		last := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if (rerr != nil && !last) || n == 0 {
			if rerr == nil || last {
				rerr = kho.Errorf(kho.EINTEGRITY, "the document ended early")
			}
			if seq == 0 {
				writeError(c, rerr)
				return
			}
			_ = c.Error(rerr)
			panic(http.ErrAbortHandler)
		}
		fields := map[string]any{"typ": SegmentType, "kid": kid}
		if seq == 0 {
			fields = deliveryHeaders(SegmentType, key, content)
		}
		fields["kho_stream"] = map[string]any{"id": stream, "seq": seq, "last": last}
		out, err := encryptTo(key, buf[:n], fields)
		if err != nil {
			if seq == 0 {
				writeError(c, err)
				return
			}
			_ = c.Error(err)
			panic(http.ErrAbortHandler)
		}
		if seq == 0 {
			c.Header("Content-Type", MediaTypeJWEStream)
			c.Status(http.StatusOK)
		}
		if _, err := c.Writer.Write(append(out, '\n')); err != nil {
			return // the agency went away
		}
		sent += int64(n)
		if last {
			s.cfg.Observer.ObserveBytes("served", sent)
			return
		}
		c.Writer.Flush()
	}
}
