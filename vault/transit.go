package vault

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"golang.org/x/mod/sumdb/note"

	"kho"
)

// Transit is kho's use of Vault's Transit engine: one key per subject on
// MountSubjects wrapping file keys, and signing keys on MountSigning for
// manifests. Key material never leaves Vault.
type Transit struct {
	logical  *vaultapi.Logical
	subjects string
	signing  string

	mu      sync.Mutex
	pubs    map[string]crypto.PublicKey // "name:version"
	ensured map[string]time.Time        // signing keys known to exist, with when their latest version was read
	latest  map[string]int
	// subjectKeys remembers subjects whose key this process created or
	// found, to spare a Vault call per deposit. Bounded; Delete forgets.
	subjectKeys map[kho.SubjectHandle]bool
}

const maxRememberedSubjects = 100_000

var (
	_ kho.SubjectKeys    = (*Transit)(nil)
	_ kho.ManifestSigner = (*Transit)(nil)
)

// NewTransit uses c's token (khod's, least privilege) on kho's mounts.
func NewTransit(c *Client) (*Transit, error) {
	if c == nil {
		return nil, kho.Errorf(kho.EINVALID, "vault: transit needs a logged-in client")
	}
	return NewTransitWith(c.API())
}

// NewTransitWith uses any Vault client (an operator's, in the CLI).
func NewTransitWith(api *vaultapi.Client) (*Transit, error) {
	if api == nil {
		return nil, kho.Errorf(kho.EINVALID, "vault: transit needs a client")
	}
	return &Transit{
		logical: api.Logical(), subjects: MountSubjects, signing: MountSigning,
		pubs: map[string]crypto.PublicKey{}, ensured: map[string]time.Time{}, latest: map[string]int{},
		subjectKeys: map[kho.SubjectHandle]bool{},
	}, nil
}

// mapErr classifies Vault's answers. Vault reports most Transit failures as
// 400 with a message; these are matched here, and only here.
func mapErr(op string, err error) error {
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) {
		return kho.Unavailable(kho.DependencyVault, "vault: "+op, err)
	}
	msg := strings.ToLower(strings.Join(re.Errors, "; "))
	switch {
	case re.StatusCode == 403:
		// kho's token refused (revoked, expired, or a policy that does not
		// allow this): kho's outage, never the caller's fault. The client
		// logs in again as soon as it sees one.
		return kho.Unavailable(kho.DependencyVault, "vault: "+op+": Vault refused kho's token", err)
	case strings.Contains(msg, "key not found") || strings.Contains(msg, "no existing key") || strings.Contains(msg, "could not find key"):
		return kho.WrapError(kho.ENOTFOUND, "vault: "+op+": key not found", err)
	case strings.Contains(msg, "message authentication failed") || strings.Contains(msg, "invalid ciphertext") ||
		strings.Contains(msg, "disallowed by policy") || strings.Contains(msg, "too old"):
		return kho.WrapError(kho.EINTEGRITY, "vault: "+op+": wrapped key does not decrypt", err)
	case re.StatusCode >= 500 || re.StatusCode == 429 || re.StatusCode == 412:
		// Overloaded, or a standby not yet caught up.
		return kho.Unavailable(kho.DependencyVault, "vault: "+op, err)
	}
	return kho.WrapError(kho.EINTERNAL, "vault: "+op, err)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// keyVersion reads N from a "vault:vN:..." value.
func keyVersion(s string) (int, error) {
	rest, ok := strings.CutPrefix(s, "vault:v")
	if !ok {
		return 0, fmt.Errorf("not a vault value")
	}
	n, _, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, fmt.Errorf("not a vault value")
	}
	return strconv.Atoi(n)
}

func subjectKey(h kho.SubjectHandle) (string, error) {
	if err := h.Validate(); err != nil {
		return "", err
	}
	return string(h), nil
}

// EnsureKey creates the subject's AES-256-GCM key when missing (Vault leaves
// an existing key as it is). The key is derived: every wrap uses a key
// derived from its binding (the ad of Wrap, sent as Transit's context), so a
// wrapped file key unwraps only for the document it was made for. Transit's
// associated_data would bind the same way, but its rewrap ignores it (Vault
// 1.19), while context survives rewrap inside Vault.
func (t *Transit) EnsureKey(ctx context.Context, h kho.SubjectHandle) error {
	name, err := subjectKey(h)
	if err != nil {
		return err
	}
	t.mu.Lock()
	known := t.subjectKeys[h]
	t.mu.Unlock()
	if known {
		return nil
	}
	if _, err := t.logical.WriteWithContext(ctx, t.subjects+"/keys/"+name, map[string]any{"type": "aes256-gcm96", "derived": true}); err != nil {
		return mapErr("create subject key", err)
	}
	t.mu.Lock()
	if len(t.subjectKeys) >= maxRememberedSubjects {
		clear(t.subjectKeys)
	}
	t.subjectKeys[h] = true
	t.mu.Unlock()
	return nil
}

// Wrap encrypts fileKey with the subject's key, bound to ad.
func (t *Transit) Wrap(ctx context.Context, h kho.SubjectHandle, fileKey, ad []byte) (string, int, error) {
	name, err := subjectKey(h)
	if err != nil {
		return "", 0, err
	}
	s, err := t.logical.WriteWithContext(ctx, t.subjects+"/encrypt/"+name, map[string]any{
		"plaintext": b64(fileKey), "context": b64(ad),
	})
	if err != nil {
		return "", 0, mapErr("wrap file key", err)
	}
	ct, _ := s.Data["ciphertext"].(string)
	v, err := keyVersion(ct)
	if err != nil {
		return "", 0, kho.WrapError(kho.EINTERNAL, "vault: wrap returned no ciphertext", err)
	}
	return ct, v, nil
}

// Unwrap decrypts a wrapped file key, which must be bound to ad.
func (t *Transit) Unwrap(ctx context.Context, h kho.SubjectHandle, wrapped string, ad []byte) ([]byte, error) {
	name, err := subjectKey(h)
	if err != nil {
		return nil, err
	}
	s, err := t.logical.WriteWithContext(ctx, t.subjects+"/decrypt/"+name, map[string]any{
		"ciphertext": wrapped, "context": b64(ad),
	})
	if err != nil {
		return nil, mapErr("unwrap file key", err)
	}
	pt, _ := s.Data["plaintext"].(string)
	key, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		return nil, kho.WrapError(kho.EINTERNAL, "vault: unwrap returned malformed plaintext", err)
	}
	return key, nil
}

// Rewrap re-encrypts items under the latest key version in one batch call;
// the file keys never leave Vault.
func (t *Transit) Rewrap(ctx context.Context, h kho.SubjectHandle, items []kho.RewrapItem) ([]kho.RewrapItem, error) {
	name, err := subjectKey(h)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, nil
	}
	batch := make([]map[string]any, len(items))
	for i, it := range items {
		batch[i] = map[string]any{"ciphertext": it.Wrapped, "context": b64(it.AD)}
	}
	s, err := t.logical.WriteWithContext(ctx, t.subjects+"/rewrap/"+name, map[string]any{"batch_input": batch})
	if err != nil {
		return nil, mapErr("rewrap file keys", err)
	}
	results, _ := s.Data["batch_results"].([]any)
	if len(results) != len(items) {
		return nil, kho.Errorf(kho.EINTERNAL, "vault: rewrap returned %d results for %d items", len(results), len(items))
	}
	out := make([]kho.RewrapItem, len(items))
	for i, r := range results {
		m, _ := r.(map[string]any)
		if e, _ := m["error"].(string); e != "" {
			return nil, mapErr("rewrap file key", &vaultapi.ResponseError{StatusCode: 400, Errors: []string{e}})
		}
		ct, _ := m["ciphertext"].(string)
		v, err := keyVersion(ct)
		if err != nil {
			return nil, kho.WrapError(kho.EINTERNAL, "vault: rewrap returned no ciphertext", err)
		}
		out[i] = kho.RewrapItem{Wrapped: ct, AD: items[i].AD, Version: v}
	}
	return out, nil
}

// Rotate adds a key version.
func (t *Transit) Rotate(ctx context.Context, h kho.SubjectHandle) error {
	name, err := subjectKey(h)
	if err != nil {
		return err
	}
	if _, err := t.logical.WriteWithContext(ctx, t.subjects+"/keys/"+name+"/rotate", nil); err != nil {
		return mapErr("rotate subject key", err)
	}
	return nil
}

func intField(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

// Versions reads the key's latest and minimum decryption versions.
func (t *Transit) Versions(ctx context.Context, h kho.SubjectHandle) (int, int, error) {
	name, err := subjectKey(h)
	if err != nil {
		return 0, 0, err
	}
	s, err := t.logical.ReadWithContext(ctx, t.subjects+"/keys/"+name)
	if err != nil {
		return 0, 0, mapErr("read subject key", err)
	}
	if s == nil {
		return 0, 0, kho.Errorf(kho.ENOTFOUND, "vault: subject key not found")
	}
	return intField(s.Data["latest_version"]), intField(s.Data["min_decryption_version"]), nil
}

// RetireBefore sets the key's minimum decryption version.
func (t *Transit) RetireBefore(ctx context.Context, h kho.SubjectHandle, v int) error {
	name, err := subjectKey(h)
	if err != nil {
		return err
	}
	if _, err := t.logical.WriteWithContext(ctx, t.subjects+"/keys/"+name+"/config", map[string]any{"min_decryption_version": v}); err != nil {
		return mapErr("retire old key versions", err)
	}
	return nil
}

// Delete allows deletion of the subject's key and deletes it.
func (t *Transit) Delete(ctx context.Context, h kho.SubjectHandle) error {
	name, err := subjectKey(h)
	if err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.subjectKeys, h)
	t.mu.Unlock()
	if _, err := t.logical.WriteWithContext(ctx, t.subjects+"/keys/"+name+"/config", map[string]any{"deletion_allowed": true}); err != nil {
		if kho.ErrorCode(mapErr("", err)) == kho.ENOTFOUND {
			return nil
		}
		return mapErr("allow deletion of subject key", err)
	}
	if _, err := t.logical.DeleteWithContext(ctx, t.subjects+"/keys/"+name); err != nil {
		return mapErr("delete subject key", err)
	}
	return nil
}

// signingKeyInfo makes sure the named ECDSA P-256 signing key exists and
// returns its latest version and public key. The latest version is re-read
// at most once a minute, so rotations are picked up.
func (t *Transit) signingKeyInfo(ctx context.Context, name string) (int, crypto.PublicKey, error) {
	t.mu.Lock()
	at, known := t.ensured[name]
	v := t.latest[name]
	pub := t.pubs[name+":"+strconv.Itoa(v)]
	t.mu.Unlock()
	if known && time.Since(at) < time.Minute && pub != nil {
		return v, pub, nil
	}
	if !known {
		if _, err := t.logical.WriteWithContext(ctx, t.signing+"/keys/"+name, map[string]any{"type": "ecdsa-p256"}); err != nil {
			return 0, nil, mapErr("create signing key", err)
		}
	}
	latest, err := t.loadPublicKeys(ctx, name)
	if err != nil {
		return 0, nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ensured[name], t.latest[name] = time.Now(), latest
	return latest, t.pubs[name+":"+strconv.Itoa(latest)], nil
}

// loadPublicKeys caches every version's public key and returns the latest
// version.
func (t *Transit) loadPublicKeys(ctx context.Context, name string) (int, error) {
	s, err := t.logical.ReadWithContext(ctx, t.signing+"/keys/"+name)
	if err != nil {
		return 0, mapErr("read signing key", err)
	}
	if s == nil {
		return 0, kho.Errorf(kho.ENOTFOUND, "vault: signing key not found")
	}
	keys, _ := s.Data["keys"].(map[string]any)
	t.mu.Lock()
	defer t.mu.Unlock()
	for ver, k := range keys {
		m, _ := k.(map[string]any)
		p, _ := m["public_key"].(string)
		if block, _ := pem.Decode([]byte(p)); block != nil {
			if pub, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
				t.pubs[name+":"+ver] = pub
			}
			continue
		}
		// Transit gives Ed25519 public keys as bare base64.
		if raw, err := base64.StdEncoding.DecodeString(p); err == nil && len(raw) == ed25519.PublicKeySize {
			t.pubs[name+":"+ver] = ed25519.PublicKey(raw)
		}
	}
	return intField(s.Data["latest_version"]), nil
}

// transitSigner is a crypto.Signer whose private key is a Transit key
// version: Sign sends the digest to Vault, which returns an ASN.1 signature.
type transitSigner struct {
	ctx     context.Context
	t       *Transit
	name    string
	version int
	pub     crypto.PublicKey
}

func (s *transitSigner) Public() crypto.PublicKey { return s.pub }

func (s *transitSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("vault: transit signer supports SHA-256 digests only")
	}
	r, err := s.t.logical.WriteWithContext(s.ctx, s.t.signing+"/sign/"+s.name, map[string]any{
		"input": b64(digest), "prehashed": true, "hash_algorithm": "sha2-256", "key_version": s.version,
	})
	if err != nil {
		return nil, mapErr("sign", err)
	}
	sig, _ := r.Data["signature"].(string)
	if v, err := keyVersion(sig); err != nil || v != s.version {
		return nil, kho.Errorf(kho.EINTERNAL, "vault: sign returned a signature of another key version")
	}
	return base64.StdEncoding.DecodeString(sig[strings.LastIndexByte(sig, ':')+1:])
}

// signJWS signs payload with the named key's latest version (kid
// "<name>:<version>"): detached or attached, with an optional typ header.
func (t *Transit) signJWS(ctx context.Context, name string, payload []byte, detached bool, typ string) (string, error) {
	v, pub, err := t.signingKeyInfo(ctx, name)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, name+":"+strconv.Itoa(v)); err != nil {
		return "", kho.WrapError(kho.EINTERNAL, "vault: jws header", err)
	}
	if typ != "" {
		if err := hdr.Set(jws.TypeKey, typ); err != nil {
			return "", kho.WrapError(kho.EINTERNAL, "vault: jws header", err)
		}
	}
	signer := &transitSigner{ctx: ctx, t: t, name: name, version: v, pub: pub}
	opts := []jws.SignOption{jws.WithKey(jwa.ES256(), signer, jws.WithProtectedHeaders(hdr))}
	body := payload
	if detached {
		opts, body = append(opts, jws.WithDetachedPayload(payload)), nil
	}
	out, err := jws.Sign(body, opts...)
	if err != nil {
		var ke *kho.Error
		if errors.As(err, &ke) {
			return "", ke
		}
		return "", kho.WrapError(kho.EUNAVAILABLE, "vault: sign", err)
	}
	return string(out), nil
}

// SignDetached signs payload with the named key's latest version: one Vault
// round trip (plus a key read at most once a minute). The JWS kid is
// "<name>:<version>".
func (t *Transit) SignDetached(ctx context.Context, name string, payload []byte) (string, error) {
	return t.signJWS(ctx, name, payload, true, "")
}

// VerifyDetached checks a detached JWS against payload with the public key of
// the version named by its kid.
func (t *Transit) VerifyDetached(ctx context.Context, sig string, payload []byte) (string, int, error) {
	msg, err := jws.Parse([]byte(sig))
	if err != nil || len(msg.Signatures()) != 1 {
		return "", 0, kho.Errorf(kho.EINTEGRITY, "signature is not a single compact JWS")
	}
	kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
	name, ver, ok := strings.Cut(kid, ":")
	v, verr := strconv.Atoi(ver)
	if !ok || verr != nil || name == "" {
		return "", 0, kho.Errorf(kho.EINTEGRITY, "signature names no signing key")
	}
	t.mu.Lock()
	pub := t.pubs[kid]
	t.mu.Unlock()
	if pub == nil {
		if _, err := t.loadPublicKeys(ctx, name); err != nil {
			if kho.ErrorCode(err) == kho.ENOTFOUND {
				return "", 0, kho.WrapError(kho.EINTEGRITY, "signature names an unknown signing key", err)
			}
			return "", 0, err
		}
		t.mu.Lock()
		pub = t.pubs[kid]
		t.mu.Unlock()
		if pub == nil {
			return "", 0, kho.Errorf(kho.EINTEGRITY, "signature names an unknown signing key version")
		}
	}
	if _, err := jws.Verify([]byte(sig), jws.WithKey(jwa.ES256(), pub), jws.WithDetachedPayload(payload)); err != nil {
		return "", 0, kho.WrapError(kho.EINTEGRITY, "signature does not match the document manifest", err)
	}
	return name, v, nil
}

// noteSigner signs C2SP signed notes (golang.org/x/mod/sumdb/note) with an
// Ed25519 Transit key: one Vault call per signature, the key never leaves.
type noteSigner struct {
	ctx     context.Context
	t       *Transit
	key     string
	version int
	name    string
	hash    uint32
}

func (s *noteSigner) Name() string    { return s.name }
func (s *noteSigner) KeyHash() uint32 { return s.hash }

func (s *noteSigner) Sign(msg []byte) ([]byte, error) {
	r, err := s.t.logical.WriteWithContext(s.ctx, s.t.signing+"/sign/"+s.key, map[string]any{
		"input": b64(msg), "key_version": s.version,
	})
	if err != nil {
		return nil, mapErr("sign note", err)
	}
	sig, _ := r.Data["signature"].(string)
	raw, err := base64.StdEncoding.DecodeString(sig[strings.LastIndexByte(sig, ':')+1:])
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, kho.Errorf(kho.EINTERNAL, "vault: malformed Ed25519 signature")
	}
	return raw, nil
}

// NoteSigner returns a signer for notes named noteName (a C2SP key name,
// such as the log's origin) backed by the named Ed25519 Transit key, created
// when missing, and the verifier key (note.NewVerifier's format) that anyone
// can check its signatures with. ctx bounds the signatures it makes.
func (t *Transit) NoteSigner(ctx context.Context, key, noteName string) (note.Signer, string, error) {
	t.mu.Lock()
	_, known := t.ensured[key]
	t.mu.Unlock()
	if !known {
		if _, err := t.logical.WriteWithContext(ctx, t.signing+"/keys/"+key, map[string]any{"type": "ed25519"}); err != nil {
			return nil, "", mapErr("create note signing key", err)
		}
	}
	latest, err := t.loadPublicKeys(ctx, key)
	if err != nil {
		return nil, "", err
	}
	t.mu.Lock()
	t.ensured[key] = time.Now()
	pub, ok := t.pubs[key+":"+strconv.Itoa(latest)].(ed25519.PublicKey)
	t.mu.Unlock()
	if !ok {
		return nil, "", kho.Errorf(kho.ECONFLICT, "vault: signing key %s is not an Ed25519 key", key)
	}
	vkey, err := note.NewEd25519VerifierKey(noteName, pub)
	if err != nil {
		return nil, "", kho.WrapError(kho.EINVALID, "vault: note verifier key", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", kho.WrapError(kho.EINVALID, "vault: note verifier key", err)
	}
	return &noteSigner{ctx: ctx, t: t, key: key, version: latest, name: noteName, hash: v.KeyHash()}, vkey, nil
}

// SignCompact returns a compact JWS with payload attached, signed with the
// named ECDSA key's latest version (kid "<name>:<version>"), with header typ.
func (t *Transit) SignCompact(ctx context.Context, name string, payload []byte, typ string) (string, error) {
	return t.signJWS(ctx, name, payload, false, typ)
}

// JWKS returns the public keys of every version of the named ECDSA signing
// key, with kid "<name>:<version>", for /.well-known/jwks.json.
func (t *Transit) JWKS(ctx context.Context, name string) (jwk.Set, error) {
	if _, _, err := t.signingKeyInfo(ctx, name); err != nil {
		return nil, err
	}
	return t.PublishedJWKS(ctx, name)
}

// PublishedJWKS is JWKS for a key that must already exist: it never creates
// one, so a public route can serve it (ENOTFOUND for a key never made).
func (t *Transit) PublishedJWKS(ctx context.Context, name string) (jwk.Set, error) {
	if _, err := t.loadPublicKeys(ctx, name); err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	t.mu.Lock()
	defer t.mu.Unlock()
	for kid, pub := range t.pubs {
		if !strings.HasPrefix(kid, name+":") {
			continue
		}
		k, err := jwk.Import(pub)
		if err != nil {
			return nil, kho.WrapError(kho.EINTERNAL, "vault: jwk", err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		_ = k.Set(jwk.AlgorithmKey, jwa.ES256())
		_ = k.Set(jwk.KeyUsageKey, "sig")
		if err := set.AddKey(k); err != nil {
			return nil, kho.WrapError(kho.EINTERNAL, "vault: jwks", err)
		}
	}
	return set, nil
}
