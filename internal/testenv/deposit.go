package testenv

import (
	"strings"
	"testing"

	"kho"
)

// Deposit stores a small text document of type typ for subject, as p. meta,
// when given, is used as is (its subject and type are set).
func (d *Documents) Deposit(t testing.TB, p kho.Principal, subject kho.SubjectID, typ, body string, meta *kho.DepositMetadata) *kho.Document {
	t.Helper()
	if meta == nil {
		meta = &kho.DepositMetadata{Name: "tài liệu / document", MediaType: "text/plain"}
		meta.IssuedOn, _ = kho.ParseDate("2024-01-15")
	}
	meta.SubjectID, meta.Type = subject, typ
	if body == "" {
		body = "nội dung / content of " + typ
	}
	doc, err := d.Svc.Deposit(Context(t), p, meta, strings.NewReader(body))
	if err != nil {
		t.Fatalf("deposit %s: %v", typ, err)
	}
	return doc
}
