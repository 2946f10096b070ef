package vault_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/uuid"

	"kho"
	"kho/internal/testenv"
	"kho/vault"
)

func newTransit(t *testing.T) *vault.Transit {
	t.Helper()
	tr, err := vault.NewTransit(testenv.KhodVault(t))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestSubjectKeyLifecycle(t *testing.T) {
	tr := newTransit(t)
	ctx := testenv.Context(t)
	h := kho.SubjectHandle(uuid.NewString())
	t.Cleanup(func() { _ = tr.Delete(ctx, h) })
	fileKey := []byte("0123456789abcdef")
	ad := []byte("kho/v1/doc-a/" + string(h))

	// Transit's encrypt would create a missing key; khod's policy allows
	// creating keys only through the keys path, so this is refused.
	// Vault's refusal is kho's outage, never the caller's fault.
	if _, _, err := tr.Wrap(ctx, h, fileKey, ad); kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("wrap before the key exists: %v, want unavailable", err)
	} else {
		denied(t, "wrap before the key exists", err)
	}
	for range 2 { // idempotent
		if err := tr.EnsureKey(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	wrapped, v1, err := tr.Wrap(ctx, h, fileKey, ad)
	if err != nil || v1 != 1 || bytes.Contains([]byte(wrapped), fileKey) {
		t.Fatalf("wrap: %q v%d %v", wrapped, v1, err)
	}
	got, err := tr.Unwrap(ctx, h, wrapped, ad)
	if err != nil || !bytes.Equal(got, fileKey) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := tr.Unwrap(ctx, h, wrapped, []byte("kho/v1/doc-b/"+string(h))); kho.ErrorCode(err) != kho.EINTEGRITY {
		t.Fatalf("unwrap bound to another document: %v, want integrity", err)
	}
	other := kho.SubjectHandle(uuid.NewString())
	t.Cleanup(func() { _ = tr.Delete(ctx, other) })
	if err := tr.EnsureKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Unwrap(ctx, other, wrapped, ad); kho.ErrorCode(err) != kho.EINTEGRITY {
		t.Fatalf("unwrap with another subject's key: %v, want integrity", err)
	}

	// Rotate, rewrap, retire the old version.
	if err := tr.Rotate(ctx, h); err != nil {
		t.Fatal(err)
	}
	latest, minDec, err := tr.Versions(ctx, h)
	if err != nil || latest != 2 || minDec != 1 {
		t.Fatalf("versions: %d %d %v", latest, minDec, err)
	}
	out, err := tr.Rewrap(ctx, h, []kho.RewrapItem{{Wrapped: wrapped, AD: ad}})
	if err != nil || len(out) != 1 || out[0].Version != 2 || !strings.HasPrefix(out[0].Wrapped, "vault:v2:") {
		t.Fatalf("rewrap: %+v %v", out, err)
	}
	// Retiring is the operator's (kho keys rewrap runs with its token):
	// khod's token may not touch min_decryption_version, so it can never
	// lower it again either.
	if err := tr.RetireBefore(ctx, h, 2); kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("khod retires a key version: %v, want unavailable", err)
	} else {
		denied(t, "khod retires a key version", err)
	}
	operator, err := vault.NewTransitWith(testenv.VaultRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := operator.RetireBefore(ctx, h, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Unwrap(ctx, h, wrapped, ad); kho.ErrorCode(err) != kho.EINTEGRITY {
		t.Fatalf("unwrap of a retired version: %v, want integrity", err)
	}
	if got, err := tr.Unwrap(ctx, h, out[0].Wrapped, ad); err != nil || !bytes.Equal(got, fileKey) {
		t.Fatalf("unwrap of the rewrapped key: %v", err)
	}

	// Crypto-shredding.
	if err := tr.Delete(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Unwrap(ctx, h, out[0].Wrapped, ad); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("unwrap after deletion: %v, want not_found", err)
	}
	if err := tr.Delete(ctx, h); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	if err := tr.EnsureKey(ctx, "not-a-handle"); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("key named by a non-handle: %v", err)
	}
}

func TestManifestSignatures(t *testing.T) {
	tr := newTransit(t)
	ctx := testenv.Context(t)
	key := testenv.Name("t-agency-")
	payload := []byte(`{"document_id":"x","sha256":"abc"}`)
	sig, err := tr.SignDetached(ctx, key, payload)
	if err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(sig, "."); len(parts) != 3 || parts[1] != "" {
		t.Fatalf("not a detached compact JWS: %s", sig)
	}
	name, v, err := tr.VerifyDetached(ctx, sig, payload)
	if err != nil || name != key || v != 1 {
		t.Fatalf("verify: %s v%d %v", name, v, err)
	}
	// A fresh Transit (another khod replica) verifies from Vault's public key.
	if _, _, err := newTransit(t).VerifyDetached(ctx, sig, payload); err != nil {
		t.Fatalf("verify on another replica: %v", err)
	}
	tampered := bytes.Replace(payload, []byte("abc"), []byte("abd"), 1)
	if _, _, err := tr.VerifyDetached(ctx, sig, tampered); kho.ErrorCode(err) != kho.EINTEGRITY {
		t.Fatalf("tampered manifest: %v, want integrity", err)
	}
	parts := strings.Split(sig, ".")
	for name, bad := range map[string]string{
		"garbage":             "not a jws",
		"flipped signature":   parts[0] + ".." + flip(parts[2]),
		"unknown key":         strings.Replace(sig, parts[0], encodeHeader(t, `{"alg":"ES256","kid":"no-such-key:1"}`), 1),
		"kid without version": strings.Replace(sig, parts[0], encodeHeader(t, `{"alg":"ES256","kid":"`+key+`"}`), 1),
	} {
		t.Run("fail/"+name, func(t *testing.T) {
			if _, _, err := tr.VerifyDetached(ctx, bad, payload); kho.ErrorCode(err) != kho.EINTEGRITY {
				t.Fatalf("%v, want integrity", err)
			}
		})
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	return string(b)
}
