package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// The JWS and JWE types kho uses.
const (
	DeliveryType   = "kho-delivery+jwe"
	SegmentType    = "kho-delivery-segment+jwe"
	UseReceiptType = "kho-use-receipt+jws"
	EventType      = "kho-event+jws"

	mediaJOSE   = "application/jose"
	mediaStream = "application/vnd.kho.jwe-stream"
	// maxSegment bounds one line of a segmented delivery: 1 MiB of content,
	// encrypted and base64url encoded, with its header.
	maxSegment = 2 << 20
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

// Manifest is what a document's issuer signed: it binds the signature to
// the document's bytes, owner and meaning.
type Manifest struct {
	Version    int    `json:"v"`
	DocumentID string `json:"document_id"`
	Subject    string `json:"subject"`
	Type       string `json:"type"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	MediaType  string `json:"media_type"`
	IssuedOn   string `json:"issued_on"`
	Issuer     string `json:"issuer"` // agency code, or "self-declared"
}

// UseReceipt is kho's signed record of one admitted fetch.
type UseReceipt struct {
	Issuer        string `json:"iss"`
	IssuedAt      int64  `json:"iat"`
	ID            string `json:"jti"`
	Subject       string `json:"sub"`
	Version       string `json:"receipt_version"`
	Agency        string `json:"agency"`
	Procedure     string `json:"procedure"`
	DocumentID    string `json:"document_id"`
	DocumentType  string `json:"document_type"`
	SHA256        string `json:"document_sha256"`
	Nonce         string `json:"nonce"`
	ConsentID     string `json:"consent_id"`
	ConsentHash   string `json:"consent_receipt_sha256"`
	UsesLeft      *int   `json:"uses_left"`
	LegalBasis    string `json:"legal_basis"`
	DataLifeDays  int    `json:"data_life_days"`
	DeleteBy      string `json:"delete_by"`
	AccessLogNote string `json:"note"`
	// JWS is the receipt as signed: keep it as the proof.
	JWS string `json:"-"`
}

// Fetched is what Fetch proved about the document it wrote.
type Fetched struct {
	// Manifest is the issuer's signed statement, checked against the
	// issuer's published keys and against the bytes written.
	Manifest Manifest
	// UseReceipt is kho's signed receipt for this use, checked against
	// kho's published keys; nil when the agency fetched its own document
	// or the subject's side did.
	UseReceipt *UseReceipt
	// Encrypted says the document came encrypted to DeliveryKey.
	Encrypted bool
}

// Fetch reads a document of a subject's store for procedure and writes it
// to w. With a DeliveryKey it asks for the segmented encrypted delivery
// and decrypts as it reads, never holding the file. Before the first byte
// is written it has checked the issuer's signature over the manifest; at
// the end, that the bytes are the ones the manifest names, and kho's use
// receipt. When Fetch returns an error, what was written to w must be
// thrown away: FetchFile does that for a file.
func (c *Client) Fetch(ctx context.Context, documentID, procedure string, w io.Writer) (*Fetched, error) {
	// A fresh nonce, which kho writes into the use receipt: a receipt
	// without it was made for another request.
	nb := make([]byte, 16)
	if _, err := rand.Read(nb); err != nil {
		return nil, err
	}
	nonce := hex.EncodeToString(nb)
	hdr := http.Header{"Kho-Fetch-Nonce": {nonce}}
	if c.DeliveryKey != nil {
		hdr.Set("Accept", mediaStream)
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/documents/"+url.PathEscape(documentID)+"/content?procedure="+url.QueryEscape(procedure), nil, hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	out := &Fetched{}
	var m *Manifest
	var got *digest
	var receiptID string
	switch {
	case c.DeliveryKey != nil && mt != mediaStream:
		// Asked for the encrypted stream: anything else (plain text, or
		// one JWE read whole) is not what kho sends, and is refused.
		return nil, fmt.Errorf("kho: fetch %s: asked for an encrypted delivery, got %q", documentID, mt)
	case c.DeliveryKey == nil && (mt == mediaJOSE || mt == mediaStream):
		return nil, fmt.Errorf("kho: fetch %s: an encrypted delivery, and no DeliveryKey to open it", documentID)
	case mt == mediaStream:
		out.Encrypted = true
		m, got, receiptID, err = c.readStream(ctx, resp.Body, w)
	default:
		receiptID = resp.Header.Get("Kho-Use-Receipt-Id")
		if m, err = c.verifyManifest(ctx, []byte(resp.Header.Get("Kho-Manifest-Signature")), documentID); err == nil {
			got = newDigest(w)
			_, err = io.Copy(got, resp.Body)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kho: fetch %s: %w", documentID, err)
	}
	if m.DocumentID != documentID {
		return nil, fmt.Errorf("kho: fetch %s: the delivery is of document %s", documentID, m.DocumentID)
	}
	if err := got.matches(m); err != nil {
		return nil, fmt.Errorf("kho: fetch %s: %w", documentID, err)
	}
	out.Manifest = *m
	// Another issuer's document is reuse: kho admits it only with a use
	// receipt, signed now, for this agency, procedure and content, and
	// named by the delivery itself. One missing, old or for another fetch
	// means the answer did not come from this fetch.
	r := resp.Header.Get("Kho-Use-Receipt")
	if r == "" {
		if m.Issuer != c.Tokens.Agency {
			return nil, fmt.Errorf("kho: fetch %s: another issuer's document came without a use receipt", documentID)
		}
		return out, nil
	}
	ur, err := c.VerifyUseReceipt(ctx, []byte(r))
	if err != nil {
		return nil, fmt.Errorf("kho: fetch %s: %w", documentID, err)
	}
	if ur.DocumentID != m.DocumentID || ur.SHA256 != m.SHA256 || ur.Procedure != procedure || ur.Agency != c.Tokens.Agency || ur.ID != receiptID || ur.Nonce != nonce {
		return nil, fmt.Errorf("kho: fetch %s: the use receipt is for another fetch", documentID)
	}
	if age := c.now().Sub(time.Unix(ur.IssuedAt, 0)); age > ReceiptMaxAge || age < -ReceiptMaxAge {
		return nil, fmt.Errorf("kho: fetch %s: the use receipt was signed %s ago, not for this fetch", documentID, age.Round(time.Second))
	}
	out.UseReceipt = ur
	return out, nil
}

// ReceiptMaxAge is how far a fetch's use receipt may be signed from the
// client's clock: a receipt outside it belongs to another fetch.
const ReceiptMaxAge = 10 * time.Minute

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// FetchFile is Fetch into the file at path: it writes a temporary file
// beside it and renames it into place only once everything checked out,
// so path never holds a partial or unverified document.
func (c *Client) FetchFile(ctx context.Context, documentID, procedure, path string) (*Fetched, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	out, err := c.Fetch(ctx, documentID, procedure, f)
	if err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, err
	}
	done = true
	return out, nil
}

// digest hashes and counts what passes through to w.
type digest struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newDigest(w io.Writer) *digest { return &digest{w: w, h: sha256.New()} }

func (d *digest) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return d.w.Write(p)
}

func (d *digest) matches(m *Manifest) error {
	if hex.EncodeToString(d.h.Sum(nil)) != m.SHA256 || d.n != m.Size {
		return errors.New("the content is not the document its issuer signed (SHA-256 or size differ)")
	}
	return nil
}

// verifyManifest checks the issuer's signature over a manifest (a compact
// JWS with the manifest as payload) with the issuer's keys, and that it is
// the manifest of documentID.
func (c *Client) verifyManifest(ctx context.Context, compact []byte, documentID string) (*Manifest, error) {
	if len(compact) == 0 {
		return nil, errors.New("the answer carries no signed manifest")
	}
	// The issuer is named inside the payload; which keys to check it with
	// is decided by it, and a payload naming another issuer fails with
	// that issuer's keys.
	var m Manifest
	_, payload, ok := bytes.Cut(compact, []byte("."))
	if ok {
		payload, _, ok = bytes.Cut(payload, []byte("."))
	}
	if !ok || decodeJSONSegment(payload, &m) != nil || m.Issuer == "" {
		return nil, errors.New("the signed manifest is malformed")
	}
	signed, err := verifyWith(ctx, compact, "", func(ctx context.Context, fresh bool) (jwk.Set, error) {
		return c.keysOfIssuer(ctx, m.Issuer, fresh)
	})
	if err != nil {
		return nil, fmt.Errorf("the issuer's signature over the manifest: %w", err)
	}
	var v Manifest
	if err := json.Unmarshal(signed, &v); err != nil || v != m {
		return nil, errors.New("the signed manifest is malformed")
	}
	if v.DocumentID != documentID {
		return nil, errors.New("the signed manifest is another document's")
	}
	return &v, nil
}

// VerifyUseReceipt checks a use receipt's signature with kho's published
// keys and returns what it says.
func (c *Client) VerifyUseReceipt(ctx context.Context, compact []byte) (*UseReceipt, error) {
	payload, err := verifyWith(ctx, compact, UseReceiptType, c.keysOfKho)
	if err != nil {
		return nil, fmt.Errorf("use receipt: %w", err)
	}
	var r UseReceipt
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("use receipt: %w", err)
	}
	r.JWS = string(compact)
	return &r, nil
}

// Event is a status change kho pushed to the agency's webhook.
type Event struct {
	Issuer   string          `json:"iss"`
	IssuedAt int64           `json:"iat"`
	ID       string          `json:"jti"` // de-duplicate on it: delivery is at least once
	Agency   string          `json:"aud"`
	Topic    string          `json:"topic"` // e.g. document.revoked, consent.revoked, delivery.deletion_due
	Payload  json.RawMessage `json:"payload"`
}

// VerifyEvent checks a webhook's body (a compact JWS, application/jose)
// with kho's published keys and that it is addressed to this agency.
func (c *Client) VerifyEvent(ctx context.Context, body []byte) (*Event, error) {
	payload, err := verifyWith(ctx, bytes.TrimSpace(body), EventType, c.keysOfKho)
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	if ev.Agency != c.Tokens.Agency {
		return nil, fmt.Errorf("event: addressed to %s, not %s", ev.Agency, c.Tokens.Agency)
	}
	return &ev, nil
}

// segment is one decrypted JWE of a delivery.
type segment struct {
	plain    []byte
	typ      string
	document *DeliveredDocument
	manifest string
	receipt  string
	stream   struct {
		ID   string `json:"id"`
		Seq  int    `json:"seq"`
		Last bool   `json:"last"`
	}
}

func (c *Client) open(compact []byte) (*segment, error) {
	m := jwe.NewMessage()
	plain, err := jwe.Decrypt(compact, jwe.WithKey(jwa.ECDH_ES_A256KW(), c.DeliveryKey), jwe.WithMessage(m))
	if err != nil {
		return nil, errors.New("the delivery does not decrypt with the delivery key")
	}
	h := m.ProtectedHeaders()
	s := &segment{plain: plain}
	_ = h.Get("typ", &s.typ)
	var raw any
	if h.Get("kho_document", &raw) == nil {
		s.document = &DeliveredDocument{}
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, s.document); err != nil {
			return nil, errors.New("the delivery's document header is malformed")
		}
	}
	_ = h.Get("kho_manifest_jws", &s.manifest)
	_ = h.Get("kho_use_receipt", &s.receipt)
	if h.Get("kho_stream", &raw) == nil {
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, &s.stream); err != nil {
			return nil, errors.New("the delivery's stream header is malformed")
		}
	}
	return s, nil
}

// first checks the first (or only) segment's description of the document
// and the issuer's manifest, before any content is written.
func (c *Client) first(ctx context.Context, s *segment, typ string) (*Manifest, error) {
	if s.typ != typ || s.document == nil {
		return nil, fmt.Errorf("not a kho delivery (typ %q)", s.typ)
	}
	m, err := c.verifyManifest(ctx, []byte(s.manifest), s.document.ID)
	if err != nil {
		return nil, err
	}
	if s.document.SHA256 != m.SHA256 || s.document.Size != m.Size {
		return nil, errors.New("the delivery's header disagrees with the signed manifest")
	}
	return m, nil
}

// readStream decrypts a segmented delivery line by line: every segment of
// one stream, in order, up to the one marked last, and nothing after.
func (c *Client) readStream(ctx context.Context, r io.Reader, w io.Writer) (*Manifest, *digest, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var m *Manifest
	var stream, receipt string
	d := newDigest(w)
	for seq := 0; ; seq++ {
		line, err := readLine(br)
		if err != nil {
			if err == io.EOF {
				return nil, nil, "", errors.New("the delivery ended before its last segment")
			}
			return nil, nil, "", err
		}
		s, err := c.open(line)
		if err != nil {
			return nil, nil, "", fmt.Errorf("segment %d: %w", seq, err)
		}
		if seq == 0 {
			if m, err = c.first(ctx, s, SegmentType); err != nil {
				return nil, nil, "", err
			}
			stream, receipt = s.stream.ID, s.receipt
		}
		if s.typ != SegmentType || s.stream.ID == "" || s.stream.ID != stream || s.stream.Seq != seq {
			return nil, nil, "", fmt.Errorf("segment %d is out of place (another stream, or out of order)", seq)
		}
		if len(s.plain) == 0 {
			// kho never sends an empty segment: a stream of them would
			// never end.
			return nil, nil, "", fmt.Errorf("segment %d is empty", seq)
		}
		if _, err := d.Write(s.plain); err != nil {
			return nil, nil, "", err
		}
		if d.n > m.Size {
			return nil, nil, "", errors.New("the delivery is longer than the document")
		}
		if s.stream.Last {
			if _, err := br.ReadByte(); err != io.EOF {
				return nil, nil, "", errors.New("the delivery goes on after its last segment")
			}
			return m, d, receipt, nil
		}
	}
}

// readLine reads one segment, bounded.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxSegment {
			return nil, errors.New("a segment is longer than any kho sends")
		}
		switch err {
		case nil:
			return bytes.TrimSuffix(line, []byte("\n")), nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, errors.New("the delivery ended inside a segment")
		default:
			return nil, err
		}
	}
}

// decodeJSONSegment decodes a base64url JWS segment holding JSON.
func decodeJSONSegment(seg []byte, v any) error {
	b := make([]byte, base64.RawURLEncoding.DecodedLen(len(seg)))
	n, err := base64.RawURLEncoding.Decode(b, seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b[:n], v)
}

// DecryptDelivery opens a document kho delivered as one compact JWE to
// key, checking only that the content is the document its header names;
// Fetch checks the issuer's and kho's signatures as well.
func DecryptDelivery(compact []byte, key jwk.Key) (*Delivery, error) {
	c := &Client{DeliveryKey: key}
	s, err := c.open(bytes.TrimSpace(compact))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if s.typ != DeliveryType || s.document == nil {
		return nil, fmt.Errorf("client: not a kho delivery (typ %q)", s.typ)
	}
	sum := sha256.Sum256(s.plain)
	if hex.EncodeToString(sum[:]) != s.document.SHA256 || int64(len(s.plain)) != s.document.Size {
		return nil, fmt.Errorf("client: the delivered content is not the document its header names")
	}
	return &Delivery{Document: *s.document, UseReceiptID: s.receipt, ManifestJWS: s.manifest, Content: s.plain}, nil
}

// Delivery is a decrypted compact delivery.
type Delivery struct {
	Document     DeliveredDocument
	UseReceiptID string
	ManifestJWS  string
	Content      []byte
}
