package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Client calls kho's API as an agency's system.
type Client struct {
	// BaseURL is where kho answers, e.g. https://kho.example.vn.
	BaseURL string
	// Tokens authenticates every call (private_key_jwt).
	Tokens *TokenSource
	// DeliveryKey is the agency system's private encryption key (use
	// "enc", alg ECDH-ES+A256KW); with it Fetch asks for encrypted
	// deliveries. Without it documents arrive as sent over the transport.
	DeliveryKey jwk.Key
	// HTTP sends the requests. By default a connection must be made in
	// 10 s and kho must start answering within 60 s; how long a body may
	// take (a large deposit or fetch) is bounded by the call's context.
	HTTP *http.Client
	// IssuerKeys, when set, gives the keys an issuer signs manifests with
	// ("self-declared" for documents their subject uploaded). By default
	// they are read from kho's /issuers/{code}/jwks.json, which trusts kho
	// (over TLS) to publish them; pin them here to trust no one but the
	// issuer.
	IssuerKeys func(ctx context.Context, issuer string) (jwk.Set, error)
	// KhoKeys, when set, gives kho's receipt and event keys; by default
	// they are read from /.well-known/jwks.json and read again when a
	// signature names a key not seen yet.
	KhoKeys func(ctx context.Context) (jwk.Set, error)
	// Now is the clock a use receipt's time is checked against (default
	// time.Now).
	Now func() time.Time

	mu      sync.Mutex
	khoKeys jwk.Set
	issuers map[string]jwk.Set
}

// New makes a client for kho at baseURL, authenticating with tokens and
// opening deliveries with deliveryKey (which may be nil).
func New(baseURL string, tokens *TokenSource, deliveryKey jwk.Key) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Tokens: tokens, DeliveryKey: deliveryKey}
}

// Problem is kho's refusal (RFC 9457 application/problem+json).
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Code      string       `json:"code"`
	Reason    string       `json:"reason"`
	RequestID string       `json:"request_id"`
	Errors    []FieldError `json:"errors"`
}

// FieldError names a wrong field of a request.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

func (p *Problem) Error() string {
	s := fmt.Sprintf("kho: %d %s", p.Status, p.Title)
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	if p.Reason != "" {
		s += " (" + p.Reason + ")"
	}
	return s
}

// Temporary says whether the same request may succeed later (a dependency
// of kho's was down, or the caller was rate limited).
func (p *Problem) Temporary() bool {
	return p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests || p.Status == http.StatusGatewayTimeout
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: tr}
}()

// do sends one authenticated request; an answer of 400 or more is returned
// as a *Problem.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	tok, err := c.Tokens.Token(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, problemOf(resp)
	}
	return resp, nil
}

func problemOf(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	p := &Problem{Status: resp.StatusCode}
	if json.Unmarshal(b, p) != nil || p.Title == "" {
		p.Title, p.Detail = http.StatusText(resp.StatusCode), strings.TrimSpace(string(b))
	}
	p.Status = resp.StatusCode
	return p
}

// call sends a JSON request (nil in for none) and decodes the JSON answer
// into out (nil to discard it).
func (c *Client) call(ctx context.Context, method, path string, in, out any, idempotencyKey string) error {
	var body io.Reader
	hdr := http.Header{}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		hdr.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.do(ctx, method, path, body, hdr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("kho: %s %s: the answer is not the expected JSON: %w", method, path, err)
	}
	return nil
}

// DepositMetadata describes a document an agency deposits in a subject's
// store.
type DepositMetadata struct {
	SubjectID   string `json:"subject_id"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	Number      string `json:"number,omitempty"`
	IssuedOn    string `json:"issued_on"`
	MediaType   string `json:"media_type"`
	Summary     string `json:"summary,omitempty"`
	ValidFrom   string `json:"valid_from,omitempty"`
	ValidUntil  string `json:"valid_until,omitempty"`
	Scope       string `json:"scope,omitempty"`
	DossierCode string `json:"dossier_code,omitempty"`
	Procedure   string `json:"procedure_code,omitempty"`
	ResultCode  string `json:"result_code,omitempty"`
}

// Document is kho's description of a stored document.
type Document struct {
	ID           string    `json:"id"`
	Subject      string    `json:"subject"`
	Type         string    `json:"type"`
	Name         string    `json:"name"`
	Number       string    `json:"number"`
	IssuedOn     string    `json:"issued_on"`
	Issuer       string    `json:"issuer"`
	Source       string    `json:"source"`
	Status       string    `json:"status"`
	MediaType    string    `json:"media_type"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	ChainID      string    `json:"chain_id"`
	Version      int       `json:"version"`
	Supersedes   string    `json:"supersedes"`
	SupersededBy string    `json:"superseded_by"`
	CreatedAt    time.Time `json:"created_at"`
}

// Deposit stores content in a subject's store, streaming it: the content
// is read once and never held in memory. Give an idempotency key to retry
// safely: a retry with the same key and the same metadata and content
// returns the first deposit instead of making a second one. A retry needs
// the content again, so keep it until Deposit returns.
func (c *Client) Deposit(ctx context.Context, meta DepositMetadata, content io.Reader, idempotencyKey string) (*Document, error) {
	return c.upload(ctx, "/v1/documents", meta, content, idempotencyKey)
}

// Supersede deposits a new version of one of the agency's documents.
func (c *Client) Supersede(ctx context.Context, id string, meta DepositMetadata, content io.Reader, idempotencyKey string) (*Document, error) {
	return c.upload(ctx, "/v1/documents/"+url.PathEscape(id)+"/versions", meta, content, idempotencyKey)
}

// boundary is fixed, so a retry sends the very same bytes (kho compares a
// retried body with the first).
const boundary = "kho-client-boundary-7f3c2a91e4d05b68"

func (c *Client) upload(ctx context.Context, path string, meta DepositMetadata, content io.Reader, idempotencyKey string) (*Document, error) {
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, err
	}
	go func() {
		err := func() error {
			if err := mw.WriteField("metadata", string(mb)); err != nil {
				return err
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="file"; filename="document"`)
			h.Set("Content-Type", meta.MediaType)
			part, err := mw.CreatePart(h)
			if err != nil {
				return err
			}
			if _, err := io.Copy(part, content); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	// kho answers a deposit it refuses before reading the document (a
	// dependency down, say) without making the client send it all.
	hdr := http.Header{"Content-Type": {mw.FormDataContentType()}, "Expect": {"100-continue"}}
	if idempotencyKey != "" {
		hdr.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.do(ctx, http.MethodPost, path, pr, hdr)
	pr.CloseWithError(io.ErrClosedPipe) // stops the writer if the request ended early
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var d Document
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("kho: deposit: the answer is not a document: %w", err)
	}
	return &d, nil
}

// Revoke withdraws one of the agency's documents; holders of copies are
// told by webhook.
func (c *Client) Revoke(ctx context.Context, id, reason string) (*Document, error) {
	var d Document
	err := c.call(ctx, http.MethodPost, "/v1/documents/"+url.PathEscape(id)+"/revocation", map[string]string{"reason": reason}, &d, "")
	return &d, err
}

// Availability is, for each document type a procedure needs, whether the
// subject's store holds a valid one the agency may fetch.
type Availability struct {
	Procedure     string             `json:"procedure"`
	DocumentTypes []TypeAvailability `json:"document_types"`
}

// TypeAvailability is one document type's answer.
type TypeAvailability struct {
	Type      string         `json:"type"`
	Required  bool           `json:"required"`
	Status    string         `json:"status"` // available, expired, missing, not_admitted
	Documents []AvailableDoc `json:"documents"`
}

// AvailableDoc is a document the agency need not ask the subject for.
type AvailableDoc struct {
	ID         string `json:"id"`
	Issuer     string `json:"issuer"`
	Source     string `json:"source"`
	IssuedOn   string `json:"issued_on"`
	ValidUntil string `json:"valid_until"`
}

// Availability asks which documents procedure needs that the subject's
// store already holds. The answer is recorded in the subject's access log.
func (c *Client) Availability(ctx context.Context, subjectID, procedure string) (*Availability, error) {
	var a Availability
	err := c.call(ctx, http.MethodPost, "/v1/availability", map[string]string{"subject_id": subjectID, "procedure": procedure}, &a, "")
	return &a, err
}

// ConsentTerms is what an agency asks a subject to consent to.
type ConsentTerms struct {
	SubjectID     string    `json:"subject_id"`
	Procedure     string    `json:"procedure"`
	Purpose       string    `json:"purpose"`
	DocumentTypes []string  `json:"document_types"`
	ValidUntil    time.Time `json:"valid_until"`
	Mode          string    `json:"mode"` // "once" or "standing"
	MaxUses       *int      `json:"max_uses,omitempty"`
	DataLifeDays  int       `json:"data_life_days"`
}

// ConsentRequest is a request and where it stands.
type ConsentRequest struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Agency    string    `json:"agency"`
	Status    string    `json:"status"` // pending, approved, denied, withdrawn
	ConsentID string    `json:"consent_id"`
	CreatedAt time.Time `json:"created_at"`
	Approvals []string  `json:"approvals"`
}

// RequestConsent asks the subject for consent; the subject answers in the
// portal. With an idempotency key a retry returns the first request.
func (c *Client) RequestConsent(ctx context.Context, t ConsentTerms, idempotencyKey string) (*ConsentRequest, error) {
	var r ConsentRequest
	err := c.call(ctx, http.MethodPost, "/v1/consent-requests", t, &r, idempotencyKey)
	return &r, err
}

// ConsentRequests lists the agency's consent requests, newest first.
func (c *Client) ConsentRequests(ctx context.Context) ([]ConsentRequest, error) {
	var out struct {
		Requests []ConsentRequest `json:"requests"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/consent-requests", nil, &out, "")
	return out.Requests, err
}

// AcknowledgeDeletion tells kho the agency deleted its copy of what a use
// receipt delivered; it returns when kho recorded it.
func (c *Client) AcknowledgeDeletion(ctx context.Context, useReceiptID string) (time.Time, error) {
	var out struct {
		At time.Time `json:"deletion_acknowledged_at"`
	}
	err := c.call(ctx, http.MethodPost, "/v1/use-receipts/"+url.PathEscape(useReceiptID)+"/deletion", nil, &out, "")
	return out.At, err
}

// UseReceipt reads a use receipt again and verifies it.
func (c *Client) UseReceipt(ctx context.Context, id string) (*UseReceipt, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/use-receipts/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return c.VerifyUseReceipt(ctx, bytes.TrimSpace(b))
}

// public reads a public JSON document of kho's.
func (c *Client) public(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, problemOf(resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// keysOfKho returns kho's receipt and event keys, read again when fresh
// is set (a signature named a key not seen yet: kho rotated).
func (c *Client) keysOfKho(ctx context.Context, fresh bool) (jwk.Set, error) {
	if c.KhoKeys != nil {
		return c.KhoKeys(ctx)
	}
	c.mu.Lock()
	set := c.khoKeys
	c.mu.Unlock()
	if set != nil && !fresh {
		return set, nil
	}
	b, err := c.public(ctx, "/.well-known/jwks.json")
	if err != nil {
		return nil, fmt.Errorf("kho's keys: %w", err)
	}
	if set, err = jwk.Parse(b); err != nil {
		return nil, fmt.Errorf("kho's keys: %w", err)
	}
	c.mu.Lock()
	c.khoKeys = set
	c.mu.Unlock()
	return set, nil
}

// keysOfIssuer returns the keys issuer signs manifests with.
func (c *Client) keysOfIssuer(ctx context.Context, issuer string, fresh bool) (jwk.Set, error) {
	if c.IssuerKeys != nil {
		return c.IssuerKeys(ctx, issuer)
	}
	c.mu.Lock()
	set := c.issuers[issuer]
	c.mu.Unlock()
	if set != nil && !fresh {
		return set, nil
	}
	b, err := c.public(ctx, "/issuers/"+url.PathEscape(issuer)+"/jwks.json")
	if err != nil {
		return nil, fmt.Errorf("issuer %s's keys: %w", issuer, err)
	}
	if set, err = jwk.Parse(b); err != nil {
		return nil, fmt.Errorf("issuer %s's keys: %w", issuer, err)
	}
	c.mu.Lock()
	if c.issuers == nil {
		c.issuers = map[string]jwk.Set{}
	}
	c.issuers[issuer] = set
	c.mu.Unlock()
	return set, nil
}

// verifyWith checks a compact JWS of type typ against the keys keys()
// gives, asking again with fresh keys once when the signature names a key
// the set does not hold. It returns the payload.
func verifyWith(ctx context.Context, compact []byte, typ string, keys func(ctx context.Context, fresh bool) (jwk.Set, error)) ([]byte, error) {
	msg, err := jws.Parse(compact)
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, fmt.Errorf("not a compact JWS")
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if got, _ := h.Type(); got != typ {
		return nil, fmt.Errorf("typ %q, not %q", got, typ)
	}
	kid, _ := h.KeyID()
	set, err := keys(ctx, false)
	if err != nil {
		return nil, err
	}
	if _, ok := set.LookupKeyID(kid); !ok {
		if set, err = keys(ctx, true); err != nil {
			return nil, err
		}
	}
	payload, err := jws.Verify(compact, jws.WithKeySet(set, jws.WithRequireKid(true)))
	if err != nil {
		return nil, fmt.Errorf("the signature does not verify with the published keys")
	}
	return payload, nil
}
