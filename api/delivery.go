package api

import (
	"context"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/storage"
)

// DeliveryType is the JWE's typ of an encrypted delivery.
const DeliveryType = "kho-delivery+jwe"

// maxEncryptedDelivery bounds a document delivered as a compact JWE, which
// is made in memory.
const maxEncryptedDelivery = 256 << 20

// wantsEncrypted says whether a fetch for a procedure by another agency is
// delivered encrypted: always when the deployment says so, else when the
// agency asks with Accept: application/jose.
func (s *Server) wantsEncrypted(c *gin.Context) bool {
	return s.cfg.EncryptDeliveries || c.GetHeader("Accept") == "application/jose"
}

// deliveryKey is the agency's registered encryption key (the first
// current one): without one an encrypted delivery is refused before any
// consent is used.
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

// deliverEncrypted answers with the document as a compact JWE to the
// agency's key (ECDH-ES+A256KW, A256GCM). Its protected header, which the
// encryption authenticates, carries what the agency needs to trust it:
// the document's id, type, hash and media type, its issuer and that kho
// verified the issuer's signature over its manifest, and the use receipt.
func (s *Server) deliverEncrypted(c *gin.Context, key jwk.Key, content *storage.Content) {
	d := content.Document
	if d.Size > maxEncryptedDelivery {
		writeError(c, kho.Errorf(kho.EINVALID, "documents over %d MiB are not delivered encrypted yet: fetch without Accept: application/jose over TLS", maxEncryptedDelivery>>20))
		return
	}
	select {
	case s.pdfGate <- struct{}{}:
		defer func() { <-s.pdfGate }()
	case <-c.Request.Context().Done():
		writeError(c, kho.Errorf(kho.EUNAVAILABLE, "the request ended while waiting"))
		return
	}
	plain, err := io.ReadAll(io.LimitReader(content.Body, maxEncryptedDelivery+1))
	if err != nil {
		// Integrity failures were recorded by the reader; nothing partial
		// is ever encrypted and sent.
		writeError(c, err)
		return
	}
	h := jwe.NewHeaders()
	kid, _ := key.KeyID()
	for name, v := range map[string]any{
		"typ": DeliveryType, "cty": d.MediaType, "kid": kid,
		"kho_document": map[string]any{"id": d.ID, "type": d.Type, "sha256": d.SHA256, "media_type": d.MediaType, "size": d.Size,
			"issuer": d.Issuer, "subject": d.Subject, "manifest_signature": "verified"},
		"kho_use_receipt": content.UseReceiptID,
	} {
		if err := h.Set(name, v); err != nil {
			writeError(c, kho.WrapError(kho.EINTERNAL, "delivery header", err))
			return
		}
	}
	out, err := jwe.Encrypt(plain, jwe.WithKey(jwa.ECDH_ES_A256KW(), key), jwe.WithContentEncryption(jwa.A256GCM()), jwe.WithProtectedHeaders(h), jwe.WithCompact())
	if err != nil {
		writeError(c, kho.WrapError(kho.EINTERNAL, "encrypt the delivery", err))
		return
	}
	s.cfg.Observer.ObserveBytes("served", int64(len(plain)))
	c.Data(http.StatusOK, "application/jose", out)
}
