package signing_test

import (
	"testing"

	"kho"
	"kho/signing"
)

// FuzzVerify feeds PDFs from anyone to the verifier behind
// POST /v1/pdf-signatures/verification: it must answer or refuse, never
// panic, and never call a damaged file valid.
func FuzzVerify(f *testing.F) {
	f.Add(samplePDF("seed"))
	f.Add([]byte("%PDF-1.4\n%%EOF\n"))
	f.Add([]byte("%PDF-1.7\n1 0 obj << /Type /Catalog /AcroForm << /Fields [2 0 R] >> >> endobj\n2 0 obj << /FT /Sig /V << /ByteRange [0 1 2 3] /Contents <3000> >> >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"))
	f.Fuzz(func(t *testing.T, pdf []byte) {
		rep, err := signing.Verify(pdf, nil)
		if err != nil {
			if kho.ErrorCode(err) != kho.EINVALID {
				t.Fatalf("code %s: %v", kho.ErrorCode(err), err)
			}
			return
		}
		if rep.Valid {
			t.Fatal("a signature is trusted without a root")
		}
	})
}
