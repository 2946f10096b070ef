package audit_test

import (
	"bytes"
	"crypto/rand"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"kho"
	"kho/audit"
)

// FuzzVerifyExport: an export is outside input to `kho audit verify`. It must
// be judged or refused, never panic, and a made-up export never verifies
// against a key nobody used.
func FuzzVerifyExport(f *testing.F) {
	_, vkey, err := note.GenerateKey(rand.Reader, "kho.test/audit")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"type":"header","origin":"kho.test/audit","scope":"full"}` + "\n" + `{"type":"end","events":0}`))
	f.Add([]byte(`{"type":"header","origin":"kho.test/audit"}` + "\n" +
		`{"type":"event","entry":{"v":1,"index":0,"prev":"","id":"x","time":"t","action":"a","outcome":"success","actor_kind":"k","details":{}},"leaf_hash":"00"}` + "\n" +
		`{"type":"checkpoint","note":"kho.test/audit\n1\nAAAA\n\n— kho.test/audit AAAA\n"}` + "\n" + `{"type":"end","events":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := audit.VerifyExport(bytes.NewReader(b), vkey, "kho.test/audit")
		if err != nil {
			if kho.ErrorCode(err) != kho.EINVALID {
				t.Fatalf("code %s: %v", kho.ErrorCode(err), err)
			}
			return
		}
		if r.OK() && r.Checkpoints > 0 {
			t.Fatal("a made-up export matched a checkpoint signed by nobody")
		}
	})
}
