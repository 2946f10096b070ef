package client

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// DeliveredDocument is what an encrypted delivery's protected header says
// of the document; the encryption authenticates it.
type DeliveredDocument struct {
	ID                string `json:"id"`
	Type              string `json:"type"`
	SHA256            string `json:"sha256"`
	MediaType         string `json:"media_type"`
	Size              int64  `json:"size"`
	Issuer            string `json:"issuer"`
	Subject           string `json:"subject"`
	ManifestSignature string `json:"manifest_signature"`
}

// Delivery is a decrypted delivery.
type Delivery struct {
	Document     DeliveredDocument
	UseReceiptID string
	Content      []byte
}

// DecryptDelivery opens a document kho delivered as a compact JWE to the
// agency's encryption key, and checks that the content is the document the
// header names (its SHA-256 and size).
func DecryptDelivery(compact []byte, key jwk.Key) (*Delivery, error) {
	var m *jwe.Message = jwe.NewMessage()
	plain, err := jwe.Decrypt(compact, jwe.WithKey(jwa.ECDH_ES_A256KW(), key), jwe.WithMessage(m))
	if err != nil {
		return nil, fmt.Errorf("client: the delivery does not decrypt with this key: %w", err)
	}
	h := m.ProtectedHeaders()
	var typ string
	if err := h.Get("typ", &typ); err != nil || typ != "kho-delivery+jwe" {
		return nil, fmt.Errorf("client: not a kho delivery (typ %q)", typ)
	}
	d := &Delivery{Content: plain}
	var raw any
	if err := h.Get("kho_document", &raw); err != nil {
		return nil, fmt.Errorf("client: the delivery names no document")
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &d.Document); err != nil {
		return nil, fmt.Errorf("client: the delivery's document: %w", err)
	}
	_ = h.Get("kho_use_receipt", &d.UseReceiptID)
	sum := sha256.Sum256(plain)
	if hex.EncodeToString(sum[:]) != d.Document.SHA256 || int64(len(plain)) != d.Document.Size {
		return nil, fmt.Errorf("client: the delivered content is not the document its header names")
	}
	return d, nil
}
