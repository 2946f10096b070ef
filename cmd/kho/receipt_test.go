package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kho/consent"
	"kho/internal/testenv"
	"kho/vault"
)

// kho receipt verify checks a receipt offline with the published keys: a
// real one is valid, an altered one or one of another type is not.
func TestReceiptVerifyOffline(t *testing.T) {
	ctx := testenv.Context(t)
	tr, err := vault.NewTransit(testenv.KhodVault(t))
	if err != nil {
		t.Fatal(err)
	}
	good, err := tr.SignCompact(ctx, consent.ReceiptKey, []byte(`{"jti":"r1","document_id":"d1"}`), consent.UseReceiptType)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tr.SignCompact(ctx, consent.ReceiptKey, []byte(`{"jti":"r2"}`), "something-else+jws")
	if err != nil {
		t.Fatal(err)
	}
	set, err := tr.JWKS(ctx, consent.ReceiptKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	kb, _ := json.Marshal(set)
	jwks := write("jwks.json", string(kb))
	out, err := runKho(t, "receipt", "verify", write("good.jws", good+"\n"), "--jwks", jwks)
	if err != nil || !strings.Contains(out, "valid use receipt") || !strings.Contains(out, `"document_id": "d1"`) {
		t.Fatalf("good receipt: %v\n%s", err, out)
	}
	parts := strings.Split(good, ".")
	parts[1] = strings.Replace(parts[1], parts[1][5:6], map[bool]string{true: "B", false: "A"}[parts[1][5:6] == "A"], 1)
	for name, body := range map[string]string{"altered": strings.Join(parts, "."), "other type": other, "not a JWS": "hello"} {
		if _, err := runKho(t, "receipt", "verify", write(strings.ReplaceAll(name, " ", "-")+".jws", body), "--jwks", jwks); err == nil || !strings.Contains(err.Error(), "NOT VALID") {
			t.Fatalf("%s: %v", name, err)
		}
	}
}
