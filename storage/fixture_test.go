package storage_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"kho"
	"kho/internal/testenv"
	"kho/postgres"
	"kho/storage"
	"kho/vault"
)

// Demo identities (internal/demo/demo.json).
const (
	citizenA = kho.SubjectID("001090000001")
	citizenB = kho.SubjectID("079085000002")
	business = kho.SubjectID("0101234567")
	agencyJ  = kho.AgencyCode("000.06.16.G09")
	agencyP  = kho.AgencyCode("000.00.15.H29")
)

var (
	asCitizenA = kho.Principal{Kind: kho.PrincipalCitizen, Person: citizenA, TokenID: "t-a"}
	asCitizenB = kho.Principal{Kind: kho.PrincipalCitizen, Person: citizenB, TokenID: "t-b"}
	asAgencyJ  = kho.Principal{Kind: kho.PrincipalAgency, Agency: agencyJ, TokenID: "t-j"}
	asAgencyP  = kho.Principal{Kind: kho.PrincipalAgency, Agency: agencyP, TokenID: "t-p"}
	asOfficerJ = kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: agencyJ, Staff: "cb01", TokenID: "t-o"}
	asOperator = kho.Principal{Kind: kho.PrincipalOperator, Staff: "op01", TokenID: "t-op"}
)

// fixture is a document service on the real stack, with a schema, an object
// prefix and subject keys of the test's own.
type fixture struct {
	svc    *storage.Service
	op     *storage.Service // with the operator's Vault token, as kho keys rewrap runs
	db     *postgres.DB
	blobs  *storage.MinIO
	keys   *vault.Transit
	prefix string
	bucket string
	ctx    context.Context
}

func newFixture(t testing.TB, mod ...func(*storage.Config)) *fixture {
	t.Helper()
	d := testenv.NewDocuments(t, mod...)
	return &fixture{svc: d.Svc, op: d.Operator, db: d.DB, blobs: d.Blobs, keys: d.Keys, prefix: d.Prefix, bucket: d.Blobs.Bucket(), ctx: testenv.Context(t)}
}

func meta(subject kho.SubjectID, typ, mediaType string) *kho.DepositMetadata {
	d, _ := kho.ParseDate("2024-01-15")
	return &kho.DepositMetadata{SubjectID: subject, Type: typ, Name: "Giấy khai sinh", IssuedOn: d, MediaType: mediaType}
}

func (f *fixture) deposit(t *testing.T, p kho.Principal, m *kho.DepositMetadata, body []byte) *kho.Document {
	t.Helper()
	d, err := f.svc.Deposit(f.ctx, p, m, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("deposit: %v", err)
	}
	return d
}

func (f *fixture) read(t *testing.T, p kho.Principal, id kho.DocumentID) ([]byte, error) {
	t.Helper()
	c, err := f.svc.Open(f.ctx, p, id, nil)
	if err != nil {
		return nil, err
	}
	defer c.Body.Close()
	return io.ReadAll(c.Body)
}

// objectOf returns the name of a document's object.
func (f *fixture) objectOf(t *testing.T, id kho.DocumentID) string {
	t.Helper()
	var name string
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT object_name FROM documents WHERE id = $1`, id).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// rawObject reads an object as it is stored, with root credentials.
func (f *fixture) rawObject(t testing.TB, name string) []byte {
	t.Helper()
	obj, err := testenv.MinIORoot(t).S3().GetObject(f.ctx, f.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putRaw replaces an object behind khod's back, as an attacker with storage
// access would.
func (f *fixture) putRaw(t *testing.T, name string, b []byte) {
	t.Helper()
	if _, err := testenv.MinIORoot(t).S3().PutObject(f.ctx, f.bucket, name, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// auditCount counts the successful events of action on doc (refusals and
// failures are recorded under the same action with another outcome).
func (f *fixture) auditCount(t *testing.T, action string, doc kho.DocumentID) int {
	t.Helper()
	outcome := "success"
	if action == "document.integrity_failure" {
		outcome = "failure"
	}
	var n int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE action = $1 AND document_id::text = $2 AND outcome = $3`, action, string(doc), outcome).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pdf returns a small, well-formed one-page PDF showing text.
func pdf(text string) []byte { return testenv.PDF(text) }
