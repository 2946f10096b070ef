package api_test

import (
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
