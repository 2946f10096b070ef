package consent_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"kho"
	"kho/consent"
	"kho/internal/testenv"
	"kho/policies"
)

// BenchmarkPolicyDecision evaluates the Cedar reuse policy alone, in process.
func BenchmarkPolicyDecision(b *testing.B) {
	e, err := policies.DefaultEngine()
	if err != nil {
		b.Fatal(err)
	}
	cat, _ := policies.DefaultCatalogue()
	proc, _ := cat.Procedure("CHC")
	q := policies.ReuseQuery{Agency: string(police), AgencyKind: "police", Action: policies.ActionFetch, Procedure: proc, DocumentType: "GKS", Consent: true}
	for b.Loop() {
		if !e.Decide(q).Allowed {
			b.Fatal("refused")
		}
	}
}

// BenchmarkConsentDecision is a whole decision in process: the catalogue,
// the subject's consents and the document's validity read from PostgreSQL,
// then the policy.
func BenchmarkConsentDecision(b *testing.B) {
	d := testenv.NewDocuments(b)
	ctx := testenv.Context(b)
	subject := kho.SubjectID("001090000888")
	doc := d.Deposit(b, agency(justice), subject, "GKS", "", nil)
	if _, err := d.Consents.Grant(ctx, citizen(subject), consent.Terms{Grantee: police, Procedure: "CHC", Purpose: "Cấp hộ chiếu / passport issuance",
		DocumentTypes: []string{"GKS"}, ValidUntil: time.Now().Add(time.Hour), Mode: "standing"}, ""); err != nil {
		b.Fatal(err)
	}
	req := kho.FetchRequest{Principal: agency(police), Document: doc, Procedure: "CHC"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			dec, err := d.Consents.Decide(ctx, req)
			if err != nil || !dec.Allowed {
				b.Errorf("decision: %+v %v", dec, err)
				return
			}
		}
	})
}

// BenchmarkConsentCheckedFetch fetches a 1 MiB document under a standing
// consent (decision, use count and audit event in one transaction, Transit
// unwrap, decryption, hash check); BenchmarkRawMinIOGet1MiB reads the same
// size with minio-go, in the same run.
func BenchmarkConsentCheckedFetch(b *testing.B) {
	d := testenv.NewDocuments(b)
	ctx := testenv.Context(b)
	subject := kho.SubjectID("001090000999")
	body := bytes.Repeat([]byte("khai sinh "), 1<<20/10)
	doc := d.Deposit(b, agency(justice), subject, "GKS", string(body), nil)
	if _, err := d.Consents.Grant(ctx, citizen(subject), consent.Terms{Grantee: police, Procedure: "CHC", Purpose: "Cấp hộ chiếu / passport issuance",
		DocumentTypes: []string{"GKS"}, ValidUntil: time.Now().Add(time.Hour), Mode: "standing"}, ""); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		c, err := d.Svc.Fetch(ctx, agency(police), doc.ID, "CHC", nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, c.Body); err != nil {
			b.Fatal(err)
		}
		c.Body.Close()
	}
}

func BenchmarkRawMinIOGet1MiB(b *testing.B) {
	d := testenv.NewDocuments(b)
	ctx := testenv.Context(b)
	s3 := testenv.MinIORoot(b).S3()
	body := bytes.Repeat([]byte("khai sinh "), 1<<20/10)
	name := d.Prefix + "raw"
	if _, err := s3.PutObject(ctx, d.Blobs.Bucket(), name, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		obj, err := s3.GetObject(ctx, d.Blobs.Bucket(), name, minio.GetObjectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, obj); err != nil {
			b.Fatal(err)
		}
		obj.Close()
	}
}
