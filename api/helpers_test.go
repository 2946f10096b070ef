package api_test

import (
	"kho/api"

	"encoding/base64"
	"encoding/json"
	"testing"
)

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }

func decodeSeg(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noDocuments stands in for the document service in tests of routes that do
// not reach it; a call would panic on the nil interface.
type noDocuments struct{ api.Documents }
