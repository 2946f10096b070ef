package signing_test

import (
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"kho/internal/testenv"
)

func samplePDF(text string) []byte { return testenv.PDF(text) }

func testKhodLogical(t *testing.T) *vaultapi.Logical { return testenv.KhodVault(t).API().Logical() }
func testRootLogical(t *testing.T) *vaultapi.Logical { return testenv.VaultRoot(t).Logical() }
