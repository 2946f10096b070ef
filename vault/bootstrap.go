package vault

import (
	"context"
	"fmt"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"kho"
)

// The mounts kho uses. The khod policy (policies/vault/khod.hcl) names them;
// changing one here means changing it there.
const (
	MountSubjects = "kho-subjects" // Transit: one key per subject
	MountSigning  = "kho-signing"  // Transit: agency, audit and receipt signing keys
	MountPKI      = "kho-pki"      // PKI: the deployment's root CA
	MountPKIInt   = "kho-pki-int"  // PKI: the agency signing intermediate
)

// BootstrapOptions says how to set Vault up for khod.
type BootstrapOptions struct {
	PolicyName  string // name of khod's policy (e.g. "khod")
	PolicyHCL   string // its rules
	RoleName    string // AppRole role khod logs in with (default "khod")
	TokenTTL    time.Duration
	TokenMaxTTL time.Duration
	// SecretIDTTL bounds the life of the secret_id issued (default 90
	// days): a leaked one stops working, and the operator issues a new one.
	SecretIDTTL time.Duration
	// BoundCIDRs, when set, are the only addresses that may log in with the
	// secret_id and use the tokens it gives (khod's hosts).
	BoundCIDRs []string
}

// AppRoleCredentials are what khod needs to log in.
type AppRoleCredentials struct {
	RoleID   string
	SecretID string
}

// Bootstrap prepares a Vault for kho using an operator's token: it enables the
// Transit and PKI mounts and the AppRole method where missing, writes khod's
// policy, (re)writes khod's role and returns its role_id and a fresh
// secret_id. It is idempotent: run again, it changes only what differs.
func Bootstrap(ctx context.Context, root *vaultapi.Client, o BootstrapOptions) (*AppRoleCredentials, error) {
	if o.PolicyName == "" || strings.TrimSpace(o.PolicyHCL) == "" {
		return nil, kho.Errorf(kho.EINVALID, "vault bootstrap: a policy name and its rules are required")
	}
	if o.RoleName == "" {
		o.RoleName = "khod"
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	if o.TokenMaxTTL == 0 {
		o.TokenMaxTTL = 24 * time.Hour
	}
	if o.SecretIDTTL == 0 {
		o.SecretIDTTL = 90 * 24 * time.Hour
	}
	mounts, err := root.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "vault bootstrap: list mounts", err)
	}
	want := []struct {
		path, kind, maxTTL string
	}{
		{MountSubjects, "transit", ""},
		{MountSigning, "transit", ""},
		{MountPKI, "pki", "87600h"},
		{MountPKIInt, "pki", "43800h"},
	}
	for _, m := range want {
		if existing, ok := mounts[m.path+"/"]; ok {
			if existing.Type != m.kind {
				return nil, kho.Errorf(kho.ECONFLICT, "vault bootstrap: %s is mounted as %s, not %s", m.path, existing.Type, m.kind)
			}
			continue
		}
		in := &vaultapi.MountInput{Type: m.kind, Description: "kho: " + m.path}
		if m.maxTTL != "" {
			in.Config.MaxLeaseTTL = m.maxTTL
		}
		if err := root.Sys().MountWithContext(ctx, m.path, in); err != nil {
			return nil, kho.WrapError(kho.EUNAVAILABLE, "vault bootstrap: mount "+m.path, err)
		}
	}
	auths, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "vault bootstrap: list auth methods", err)
	}
	if _, ok := auths["approle/"]; !ok {
		if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
			return nil, kho.WrapError(kho.EUNAVAILABLE, "vault bootstrap: enable approle", err)
		}
	}
	if err := root.Sys().PutPolicyWithContext(ctx, o.PolicyName, o.PolicyHCL); err != nil {
		return nil, kho.WrapError(kho.EINVALID, "vault bootstrap: write policy "+o.PolicyName, err)
	}
	rolePath := "auth/approle/role/" + o.RoleName
	role := map[string]any{
		"token_policies":          []string{o.PolicyName},
		"token_no_default_policy": true,
		"token_ttl":               fmt.Sprintf("%ds", int(o.TokenTTL.Seconds())),
		"token_max_ttl":           fmt.Sprintf("%ds", int(o.TokenMaxTTL.Seconds())),
		"token_type":              "service",
		"secret_id_ttl":           fmt.Sprintf("%ds", int(o.SecretIDTTL.Seconds())),
		"secret_id_bound_cidrs":   o.BoundCIDRs,
		"token_bound_cidrs":       o.BoundCIDRs,
	}
	if _, err := root.Logical().WriteWithContext(ctx, rolePath, role); err != nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "vault bootstrap: write role", err)
	}
	rid, err := root.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil || rid == nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "vault bootstrap: read role_id", err)
	}
	sid, err := root.Logical().WriteWithContext(ctx, rolePath+"/secret-id", nil)
	if err != nil || sid == nil {
		return nil, kho.WrapError(kho.EUNAVAILABLE, "vault bootstrap: create secret_id", err)
	}
	roleID, _ := rid.Data["role_id"].(string)
	secretID, _ := sid.Data["secret_id"].(string)
	if roleID == "" || secretID == "" {
		return nil, kho.Errorf(kho.EUNAVAILABLE, "vault bootstrap: Vault returned an empty role_id or secret_id")
	}
	return &AppRoleCredentials{RoleID: roleID, SecretID: secretID}, nil
}
