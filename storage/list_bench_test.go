package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"kho"
	"kho/internal/testenv"
	"kho/postgres"
	"kho/storage"
)

// listSchema keeps the ten million documents between runs: loading them
// takes minutes, a listing milliseconds.
const (
	listSchema    = "kho_bench_list"
	listSubjects  = 1_000_000
	listDocuments = 10_000_000
)

// BenchmarkListTenMillion lists one store's documents, as its owner sees
// them (newest first, a page of 50, the listing recorded in the audit
// trail), with ten million documents of a million stores in the table, and
// reports the 50th and 99th percentile of the time a listing takes.
//
// The rows are made by PostgreSQL itself (INSERT … SELECT over
// generate_series, faster than COPY from here: nothing crosses the wire),
// once, into a schema of their own that later runs reuse.
func BenchmarkListTenMillion(b *testing.B) {
	ctx := testenv.Context(b)
	db, err := postgres.Open(ctx, testenv.DatabaseURL(b), postgres.WithSchema(listSchema), postgres.WithMaxConns(8))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	d := testenv.NewDocumentsOn(b, db)
	var n int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n < listDocuments {
		// Loading takes longer than a test's context allows; each chunk of
		// stores is loaded once, so an interrupted load resumes.
		lctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		start := time.Now()
		b.Logf("loading %d documents of %d stores into schema %s (once; later runs reuse them)", listDocuments, listSubjects, listSchema)
		if _, err := db.Pool.Exec(lctx, `INSERT INTO subjects (id, kind, handle)
			SELECT '0010' || lpad(i::text, 8, '0'), 'citizen', gen_random_uuid() FROM generate_series(1, $1) i
			ON CONFLICT DO NOTHING`, listSubjects); err != nil {
			b.Fatal(err)
		}
		per := listDocuments / listSubjects
		const chunk = listSubjects / 20
		for lo := 1; lo <= listSubjects; lo += chunk {
			first, last := fmt.Sprintf("0010%08d", lo), fmt.Sprintf("0010%08d", lo+chunk-1)
			var done bool
			if err := db.Pool.QueryRow(lctx, `SELECT EXISTS (SELECT 1 FROM documents d JOIN subjects s ON s.handle = d.subject_handle WHERE s.id = $1)`,
				last).Scan(&done); err != nil {
				b.Fatal(err)
			}
			if done {
				continue
			}
			if _, err := db.Pool.Exec(lctx, `INSERT INTO documents (id, subject_handle, type_code, name, number, issued_on, issuer, source, summary,
				scope, status, media_type, size, sha256, chain_id, version, object_name, wrapped_key, key_version, signature)
				SELECT g.id, s.handle, 'GKS', 'Giấy khai sinh', '', date '2024-01-15', '000.06.16.G09', 'agency_issued', '',
				 '', 'valid', 'text/plain', 1024, sha256(g.id::text::bytea), g.id, 1, 'bench/' || g.id, 'vault:v1:x', 1, 'x'
				FROM subjects s, LATERAL (SELECT gen_random_uuid() AS id, s.handle AS owner FROM generate_series(1, $3)) g
				WHERE s.id BETWEEN $1 AND $2 AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.subject_handle = s.handle)`,
				first, last, per); err != nil {
				b.Fatal(err)
			}
			b.Logf("  %d of %d stores filled (%s)", lo+chunk-1, listSubjects, time.Since(start).Round(time.Second))
		}
		if _, err := db.Pool.Exec(lctx, `ANALYZE subjects; ANALYZE documents`); err != nil {
			b.Fatal(err)
		}
	}
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		id := kho.SubjectID(fmt.Sprintf("0010%08d", 1+rand.IntN(listSubjects)))
		p := kho.Principal{Kind: kho.PrincipalCitizen, Person: id, TokenID: "bench"}
		t0 := time.Now()
		page, err := d.Svc.ListFor(ctx, p, "", storage.ListFilter{})
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Documents) != listDocuments/listSubjects {
			b.Fatalf("store %s lists %d documents, not %d", id, len(page.Documents), listDocuments/listSubjects)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
