package vault_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"kho"
	"kho/internal/testenv"
	"kho/vault"
)

var _ kho.HealthChecker = (*vault.Client)(nil)

// denied asserts that Vault refused the call with 403 permission denied.
func denied(t *testing.T, what string, err error) {
	t.Helper()
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 403 {
		t.Errorf("%s: want 403 permission denied, got %v", what, err)
	}
}

func TestKhodTokenCarriesOnlyItsPolicy(t *testing.T) {
	khod := testenv.KhodVault(t)
	ctx := testenv.Context(t)
	self, err := khod.API().Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	policies, err := self.TokenPolicies()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(policies, []string{"khod"}) {
		t.Fatalf("khod's token has policies %v, want exactly [khod] (no default, never root)", policies)
	}
	if st := testenv.Stack(t); khod.API().Token() == st.VaultRootToken {
		t.Fatal("khod holds the root token")
	}
}

// Every way the khod token could reach beyond its own paths is refused.
func TestKhodTokenIsLeastPrivilege(t *testing.T) {
	khod := testenv.KhodVault(t).API().Logical()
	root := testenv.VaultRoot(t).Logical()
	ctx := testenv.Context(t)
	subjectKey := testenv.Name("t-subject-")
	signingKey := testenv.Name("t-agency-")

	// What khod must be able to do, so the refusals below are about policy
	// and not a broken token.
	if _, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey, map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatalf("create subject key: %v", err)
	}
	if _, err := khod.WriteWithContext(ctx, vault.MountSigning+"/keys/"+signingKey, map[string]any{"type": "ecdsa-p256"}); err != nil {
		t.Fatalf("create signing key: %v", err)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("a 32-byte file key, for example."))
	enc, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/encrypt/"+subjectKey, map[string]any{"plaintext": plain})
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	dec, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/decrypt/"+subjectKey, map[string]any{"ciphertext": enc.Data["ciphertext"]})
	if err != nil || dec.Data["plaintext"] != plain {
		t.Fatalf("decrypt: %v", err)
	}
	if _, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey+"/rotate", nil); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if _, err := khod.WriteWithContext(ctx, vault.MountSigning+"/sign/"+signingKey, map[string]any{"input": plain}); err != nil {
		t.Fatalf("sign: %v", err)
	}

	tests := []struct {
		name string
		call func() error
	}{
		{"read its own policy", func() error { _, err := khod.ReadWithContext(ctx, "sys/policy/khod"); return err }},
		// Retiring key versions is the operator's; lowering the minimum
		// again would undo a retirement.
		{"change min_decryption_version", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey+"/config", map[string]any{"min_decryption_version": 1})
			return err
		}},
		{"change min_encryption_version", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey+"/config", map[string]any{"min_encryption_version": 1})
			return err
		}},
		{"list policies", func() error { _, err := khod.ReadWithContext(ctx, "sys/policy"); return err }},
		{"write a policy", func() error {
			_, err := khod.WriteWithContext(ctx, "sys/policy/escalate", map[string]any{"policy": `path "*" { capabilities = ["sudo","read","create","update","delete","list"] }`})
			return err
		}},
		{"rewrite its own policy", func() error {
			_, err := khod.WriteWithContext(ctx, "sys/policies/acl/khod", map[string]any{"policy": `path "*" { capabilities = ["read"] }`})
			return err
		}},
		{"mount an engine", func() error {
			_, err := khod.WriteWithContext(ctx, "sys/mounts/evil", map[string]any{"type": "kv"})
			return err
		}},
		{"create a token", func() error { _, err := khod.WriteWithContext(ctx, "auth/token/create", map[string]any{}); return err }},
		{"mint more AppRole secrets", func() error {
			_, err := khod.WriteWithContext(ctx, "auth/approle/role/khod/secret-id", nil)
			return err
		}},
		{"read the AppRole role", func() error { _, err := khod.ReadWithContext(ctx, "auth/approle/role/khod"); return err }},
		{"export a subject key", func() error {
			_, err := khod.ReadWithContext(ctx, vault.MountSubjects+"/export/encryption-key/"+subjectKey)
			return err
		}},
		{"export a signing key", func() error {
			_, err := khod.ReadWithContext(ctx, vault.MountSigning+"/export/signing-key/"+signingKey)
			return err
		}},
		{"back up a key", func() error {
			_, err := khod.ReadWithContext(ctx, vault.MountSubjects+"/backup/"+subjectKey)
			return err
		}},
		{"restore a key", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/restore/"+testenv.Name("x"), map[string]any{"backup": "AAAA"})
			return err
		}},
		{"create an exportable key", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+testenv.Name("t-exp-"), map[string]any{"exportable": true})
			return err
		}},
		{"create a key with plaintext backup", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSigning+"/keys/"+testenv.Name("t-bak-"), map[string]any{"allow_plaintext_backup": true})
			return err
		}},
		{"make an existing key exportable", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey+"/config", map[string]any{"exportable": true})
			return err
		}},
		{"allow plaintext backup of a key", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey+"/config", map[string]any{"allow_plaintext_backup": true})
			return err
		}},
		{"make a signing key deletable", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountSigning+"/keys/"+signingKey+"/config", map[string]any{"deletion_allowed": true})
			return err
		}},
		{"delete a signing key", func() error {
			_, err := khod.DeleteWithContext(ctx, vault.MountSigning+"/keys/"+signingKey)
			return err
		}},
		{"read the PKI root's private issuer config", func() error { _, err := khod.ReadWithContext(ctx, vault.MountPKI+"/config/urls"); return err }},
		{"generate a root CA", func() error {
			_, err := khod.WriteWithContext(ctx, vault.MountPKI+"/root/generate/internal", map[string]any{"common_name": "evil"})
			return err
		}},
		{"reach the generic transit mount", func() error {
			_, err := khod.WriteWithContext(ctx, "transit/keys/x", nil)
			return err
		}},
		{"read kv secrets", func() error { _, err := khod.ReadWithContext(ctx, "secret/data/anything"); return err }},
		{"read the audit devices", func() error { _, err := khod.ReadWithContext(ctx, "sys/audit"); return err }},
		{"seal Vault", func() error { _, err := khod.WriteWithContext(ctx, "sys/seal", nil); return err }},
		{"read raw storage", func() error { _, err := khod.ReadWithContext(ctx, "sys/raw/core"); return err }},
		{"use cubbyhole (no default policy)", func() error {
			_, err := khod.WriteWithContext(ctx, "cubbyhole/x", map[string]any{"a": "b"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run("fail/"+tt.name, func(t *testing.T) { denied(t, tt.name, tt.call()) })
	}

	// Crypto-shredding a subject key is khod's to do: it may allow deletion
	// and delete, on the subjects mount only.
	if _, err := khod.WriteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey+"/config", map[string]any{"deletion_allowed": true}); err != nil {
		t.Fatalf("allow deletion of a subject key: %v", err)
	}
	if _, err := khod.DeleteWithContext(ctx, vault.MountSubjects+"/keys/"+subjectKey); err != nil {
		t.Fatalf("delete a subject key: %v", err)
	}
	// The signing key is still there (read as root).
	if s, err := root.ReadWithContext(ctx, vault.MountSigning+"/keys/"+signingKey); err != nil || s == nil {
		t.Fatalf("signing key gone: %v", err)
	}
}

func TestAppRoleLoginFailures(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	tests := []struct {
		name string
		cfg  vault.Config
		code string
	}{
		{"fail/wrong secret id", vault.Config{Address: st.VaultAddr, RoleID: st.VaultRoleID, SecretID: "00000000-0000-0000-0000-000000000000"}, kho.EUNAUTHORIZED},
		{"fail/missing secret id", vault.Config{Address: st.VaultAddr, RoleID: st.VaultRoleID}, kho.EINVALID},
		{"fail/unreachable", vault.Config{Address: "http://127.0.0.1:1", RoleID: "a", SecretID: "b", Timeout: 2 * time.Second}, kho.EUNAVAILABLE},
		{"fail/malformed address", vault.Config{Address: "127.0.0.1:8200", RoleID: "a", SecretID: "b"}, kho.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := vault.New(ctx, tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("login succeeded")
			}
			if kho.ErrorCode(err) != tt.code {
				t.Fatalf("code %s (%v), want %s", kho.ErrorCode(err), err, tt.code)
			}
		})
	}
}

// A token that reaches its max TTL is replaced by a fresh login, without
// khod noticing; Close revokes the last one.
func TestTokenRenewalAndRelogin(t *testing.T) {
	st := testenv.Stack(t)
	root := testenv.VaultRoot(t)
	ctx := testenv.Context(t)
	role := testenv.Name("t-role-")
	path := "auth/approle/role/" + role
	if _, err := root.Logical().WriteWithContext(ctx, path, map[string]any{
		"token_policies": []string{"khod"}, "token_no_default_policy": true,
		"token_ttl": "2s", "token_max_ttl": "5s",
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = root.Logical().Delete(path) })
	rid, err := root.Logical().ReadWithContext(ctx, path+"/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().WriteWithContext(ctx, path+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vault.New(ctx, vault.Config{Address: st.VaultAddr, RoleID: rid.Data["role_id"].(string), SecretID: sid.Data["secret_id"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	first := c.API().Token()
	deadline := time.Now().Add(60 * time.Second)
	for {
		logins, renewals := c.Stats()
		if logins >= 2 && renewals >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d logins, %d renewals; want a renewal and a re-login", logins, renewals)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The client still works with its newest token.
	if _, err := c.API().Auth().Token().LookupSelfWithContext(ctx); err != nil {
		t.Fatalf("lookup-self after re-login: %v", err)
	}
	last := c.API().Token()
	if last == first {
		t.Fatal("token did not change after re-login")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := root.Auth().Token().LookupWithContext(ctx, last); err == nil {
		t.Fatal("token still valid after Close")
	}
}

func TestBootstrapIsIdempotent(t *testing.T) {
	root := testenv.VaultRoot(t)
	ctx := testenv.Context(t)
	role := testenv.Name("t-boot-")
	policy := testenv.Name("t-pol-")
	t.Cleanup(func() {
		_, _ = root.Logical().Delete("auth/approle/role/" + role)
		_ = root.Sys().DeletePolicy(policy)
	})
	opts := vault.BootstrapOptions{PolicyName: policy, PolicyHCL: `path "auth/token/lookup-self" { capabilities = ["read"] }`, RoleName: role}
	a, err := vault.Bootstrap(ctx, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := vault.Bootstrap(ctx, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.RoleID != b.RoleID || a.SecretID == b.SecretID {
		t.Fatalf("second bootstrap: role_id changed or secret_id reused")
	}
	// The secret_id lives for a bounded time and works from the bound
	// addresses only.
	bound := opts
	bound.BoundCIDRs, bound.SecretIDTTL = []string{"10.255.255.0/24"}, 2*time.Hour
	c, err := vault.Bootstrap(ctx, root, bound)
	if err != nil {
		t.Fatal(err)
	}
	info, err := root.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/secret-id/lookup", map[string]any{"secret_id": c.SecretID})
	if err != nil || info == nil {
		t.Fatalf("look up the secret_id: %v", err)
	}
	if ttl, _ := info.Data["secret_id_ttl"].(json.Number).Int64(); ttl != 7200 {
		t.Fatalf("secret_id_ttl = %v, want 7200", info.Data["secret_id_ttl"])
	}
	st := testenv.Stack(t)
	if _, err := vault.New(ctx, vault.Config{Address: st.VaultAddr, RoleID: c.RoleID, SecretID: c.SecretID}); kho.ErrorCode(err) != kho.EUNAUTHORIZED {
		t.Fatalf("login from outside the bound CIDR: %v, want refused", err)
	}
	if _, err := vault.Bootstrap(ctx, root, vault.BootstrapOptions{PolicyName: policy, PolicyHCL: "not hcl {{{"}); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("bad policy: %v, want invalid", err)
	}
}

func TestHealth(t *testing.T) {
	c := testenv.KhodVault(t)
	if err := c.Health(testenv.Context(t)); err != nil {
		t.Fatal(err)
	}
	down, err := vault.NewAPIClient("http://127.0.0.1:1", "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Health(testenv.Context(t), down); kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("health of nothing: %v", err)
	}
}

// A token revoked behind khod's back: the next call is refused as an
// outage (never as the caller's fault or an integrity failure), readiness
// fails, and the client logs in again at once instead of at its next
// renewal; then calls work again.
func TestRevokedTokenIsReplacedAtOnce(t *testing.T) {
	st := testenv.Stack(t)
	root := testenv.VaultRoot(t)
	ctx := testenv.Context(t)
	c, err := vault.New(ctx, vault.Config{Address: st.VaultAddr, RoleID: st.VaultRoleID, SecretID: st.VaultSecretID, RefusalGrace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	tr, err := vault.NewTransit(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.JWKS(ctx, "consent-receipt"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := root.Auth().Token().RevokeTreeWithContext(ctx, c.API().Token()); err != nil {
		t.Fatal(err)
	}
	_, err = tr.SignCompact(ctx, "consent-receipt", []byte(`{}`), "x")
	if kho.ErrorCode(err) != kho.EUNAVAILABLE {
		t.Fatalf("a call with a revoked token: %v, want unavailable", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if logins, _ := c.Stats(); logins >= 2 && c.Health(ctx) == nil {
			break
		}
		if time.Now().After(deadline) {
			logins, _ := c.Stats()
			t.Fatalf("no new login 10 s after the refusal (%d logins, health %v)", logins, c.Health(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := tr.SignCompact(ctx, "consent-receipt", []byte(`{}`), "x"); err != nil {
		t.Fatalf("after logging in again: %v", err)
	}
}
