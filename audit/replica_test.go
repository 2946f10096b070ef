package audit_test

import (
	"testing"

	"kho/audit"
	"kho/internal/testenv"
	"kho/postgres"
)

// Searches go to the read replica when there is one, and to the primary
// when the replica cannot answer; appends never go to the replica, which
// refuses writes.
func TestSearchesReadFromTheReplica(t *testing.T) {
	f := newLog(t)
	f.fill(t, 12, 6)
	all := audit.Filter{Staff: "cb01"}
	primary, err := f.log.Search(f.ctx, all)
	if err != nil || len(primary.Events) != 12 {
		t.Fatalf("on the primary: %v", err)
	}

	// A stand-in replica that has replayed nothing yet: an empty,
	// migrated schema opened read-only. What a search finds tells where
	// it read.
	lagging := testenv.DB(t, true)
	replica, err := postgres.Open(f.ctx, testenv.DatabaseURL(t), postgres.WithSchema(lagging.Schema()), postgres.WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replica.Close)
	f.log.ReadFrom(replica)
	page, err := f.log.Search(f.ctx, all)
	if err != nil || len(page.Events) != 0 {
		t.Fatalf("a search with a replica read %d events (%v): it did not read from the replica", len(page.Events), err)
	}
	if _, err := replica.Pool.Exec(f.ctx, `CREATE TABLE written_on_a_replica (x int)`); err == nil {
		t.Fatal("the replica's connections accept writes")
	}

	// A replica that is down: the primary answers.
	down, err := postgres.Open(f.ctx, "postgres://kho:x@127.0.0.1:1/kho?connect_timeout=2", postgres.WithReadOnly())
	if err != nil {
		t.Fatalf("opening a replica that is down must not fail khod's start: %v", err)
	}
	t.Cleanup(down.Close)
	f.log.ReadFrom(down)
	page, err = f.log.Search(f.ctx, all)
	if err != nil || len(page.Events) != 12 {
		t.Fatalf("with the replica down: %d events, %v", len(page.Events), err)
	}
	if page.Checkpoint == "" || page.Events[0].Proof == nil {
		t.Fatal("the primary's answer lacks its checkpoint and proofs")
	}
}
