package vault_test

import (
	"encoding/base64"
	"testing"
)

func encodeHeader(t *testing.T, h string) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString([]byte(h))
}
