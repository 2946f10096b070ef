// Package policies holds kho's declarative rules and the pure decisions made
// from them: the Vault policy khod runs under, the catalogue of procedures and
// document types, the reuse policy (Cedar, evaluated with cedar-go), and who
// may do what (access.go). Files are embedded so that the binary and its
// rules cannot drift apart.
//
// policies imports only the root package.
package policies

import (
	"embed"
	"fmt"
)

//go:embed vault/*.hcl
var vaultPolicies embed.FS

// KhodVaultPolicyName is the name under which khod's policy is written.
const KhodVaultPolicyName = "khod"

// KhodVaultPolicy returns the HCL of the least-privilege Vault policy khod's
// AppRole tokens carry.
func KhodVaultPolicy() (string, error) {
	b, err := vaultPolicies.ReadFile("vault/khod.hcl")
	if err != nil {
		return "", fmt.Errorf("policies: read embedded vault policy: %w", err)
	}
	return string(b), nil
}
