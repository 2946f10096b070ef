package audit_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"kho"
	"kho/audit"
	"kho/internal/testenv"
	"kho/postgres"
	"kho/vault"
)

const origin = "kho.test/audit"

type logFixture struct {
	db  *postgres.DB
	log *audit.Log
	ctx context.Context
}

func newLog(t testing.TB) *logFixture {
	t.Helper()
	ctx := testenv.Context(t)
	db := testenv.DB(t, true)
	tr, err := vault.NewTransit(testenv.KhodVault(t))
	if err != nil {
		t.Fatal(err)
	}
	signer, vkey, err := tr.NoteSigner(ctx, testenv.Name("t-audit-"), origin)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(db, signer, vkey, origin)
	if err != nil {
		t.Fatal(err)
	}
	return &logFixture{db: db, log: l, ctx: ctx}
}

var officer = kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: "000.06.16.G09", Staff: "cb01", TokenID: "tok-1"}

// fill records n events, with a checkpoint after every `every`.
func (f *logFixture) fill(t testing.TB, n, every int) {
	t.Helper()
	for i := range n {
		ev := audit.Event{
			Action: audit.DocumentRead, Outcome: audit.Success, Actor: officer,
			Subject: kho.SubjectHandle(fmt.Sprintf("00000000-0000-4000-8000-%012d", i%3)), Document: kho.NewDocumentID(),
			Purpose: "DKKH", LegalBasis: "Luật 91/2025 điều 19", Details: map[string]any{"n": i, "range": []int{0, 99}},
		}
		if err := audit.RecordNow(f.ctx, f.db, ev); err != nil {
			t.Fatal(err)
		}
		if every > 0 && (i+1)%every == 0 {
			if _, err := f.log.MakeCheckpoint(f.ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// tamper changes the log behind the application's back, as a database
// administrator could: the append-only triggers are switched off first.
func (f *logFixture) tamper(t *testing.T, sql ...string) {
	t.Helper()
	err := f.db.InTx(f.ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(f.ctx, `ALTER TABLE audit_events DISABLE TRIGGER USER`); err != nil {
			return err
		}
		for _, s := range sql {
			if _, err := tx.Exec(f.ctx, s); err != nil {
				return err
			}
		}
		_, err := tx.Exec(f.ctx, `ALTER TABLE audit_events ENABLE TRIGGER USER`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *logFixture) verify(t *testing.T) *audit.Result {
	t.Helper()
	r, err := f.log.Verify(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUntouchedLogVerifies(t *testing.T) {
	f := newLog(t)
	f.fill(t, 25, 10)
	r := f.verify(t)
	if !r.OK() || r.Events != 25 || r.Checkpoints != 2 {
		t.Fatalf("untouched log: %+v %v", r, r.First)
	}
	// Every event has an inclusion proof in the latest checkpoint, and the
	// checkpoints are consistent.
	c, err := f.log.LatestCheckpoint(f.ctx)
	if err != nil || c.Size != 20 {
		t.Fatalf("latest checkpoint: %+v %v", c, err)
	}
	if _, err := f.log.Consistency(f.ctx, 10, 20); err != nil {
		t.Fatal(err)
	}
}

func TestTamperingIsDetectedAtTheRightEvent(t *testing.T) {
	tests := []struct {
		name  string
		sql   []string
		index uint64
		why   string
	}{
		{"fail/a field changed", []string{`UPDATE audit_events SET outcome = 'denied' WHERE leaf_index = 7`}, 7, "altered"},
		{"fail/a detail changed", []string{`UPDATE audit_events SET details = '{"n": 99, "range": [0, 99]}' WHERE leaf_index = 13`}, 13, "altered"},
		{"fail/a field changed and its hash recomputed", []string{
			`UPDATE audit_events SET purpose = 'forged', leaf_hash = sha256('x'::bytea) WHERE leaf_index = 4`}, 4, "altered"},
		{"fail/a row deleted", []string{`DELETE FROM audit_events WHERE leaf_index = 7`}, 7, "missing"},
		{"fail/the newest rows deleted", []string{`DELETE FROM audit_events WHERE leaf_index >= 18`}, 18, "removed"},
		{"fail/a row inserted in the middle", []string{
			`UPDATE audit_events SET leaf_index = -(leaf_index + 1) WHERE leaf_index >= 7`,
			`UPDATE audit_events SET leaf_index = -leaf_index WHERE leaf_index < 0`,
			`INSERT INTO audit_events (id, occurred_at, action, outcome, actor_kind, details, leaf_index, prev_hash, leaf_hash)
			 SELECT gen_random_uuid(), occurred_at, 'document.read', 'success', 'agency', '{}', 7, leaf_hash, sha256('forged'::bytea)
			 FROM audit_events WHERE leaf_index = 6`}, 7, "altered"},
		{"fail/a row inserted outside the chain", []string{
			`INSERT INTO audit_events (id, occurred_at, action, outcome, actor_kind, details) VALUES (gen_random_uuid(), now(), 'document.read', 'success', 'agency', '{}')`}, 0, "no place"},
		{"fail/two rows swapped", []string{
			`CREATE TEMP TABLE swap AS SELECT * FROM audit_events WHERE leaf_index IN (5, 12)`,
			`UPDATE audit_events e SET action = s.action, outcome = s.outcome, subject_handle = s.subject_handle, document_id = s.document_id, details = s.details, id = gen_random_uuid()
			 FROM swap s WHERE e.leaf_index IN (5, 12) AND s.leaf_index = 17 - e.leaf_index`}, 5, "altered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newLog(t)
			f.fill(t, 20, 10)
			if r := f.verify(t); !r.OK() {
				t.Fatalf("before tampering: %v", r.First)
			}
			f.tamper(t, tt.sql...)
			r := f.verify(t)
			if r.OK() {
				t.Fatal("tampering not detected")
			}
			if r.First.Index != tt.index || !strings.Contains(r.First.Reason, tt.why) {
				t.Fatalf("first problem: %v; want event %d (%s)", r.First, tt.index, tt.why)
			}
		})
	}
}

// The application's role cannot change the trail at all; the owner is
// stopped by the triggers.
func TestAuditTrailIsAppendOnly(t *testing.T) {
	f := newLog(t)
	f.fill(t, 3, 3) // and a checkpoint, so there is a row of each table to refuse changing
	st := testenv.Stack(t)
	if st.DatabaseAppURL == "" {
		t.Fatal("the dev stack has no application role")
	}
	app, err := postgres.Open(f.ctx, st.DatabaseAppURL, postgres.WithSchema(f.db.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	// The application role appends, as khod does.
	if err := audit.RecordNow(f.ctx, app, audit.Event{Action: audit.DocumentRead, Outcome: audit.Success, Actor: officer}); err != nil {
		t.Fatalf("khod's role cannot append: %v", err)
	}
	for _, db := range []struct {
		name string
		db   *postgres.DB
	}{{"application role", app}, {"owner", f.db}} {
		for _, sql := range []string{
			`UPDATE audit_events SET outcome = 'denied' WHERE leaf_index = 1`,
			`DELETE FROM audit_events WHERE leaf_index = 1`,
			`TRUNCATE audit_events`,
			`UPDATE audit_tree_nodes SET hash = '\x00' WHERE level = 0 AND idx = 0`,
			`DELETE FROM audit_checkpoints`,
		} {
			t.Run(db.name+"/"+strings.Fields(sql)[0]+" "+strings.Fields(sql)[1], func(t *testing.T) {
				if _, err := db.db.Pool.Exec(f.ctx, sql); err == nil {
					t.Fatalf("%s: %s succeeded", db.name, sql)
				}
			})
		}
	}
	if r := f.verify(t); !r.OK() || r.Events != 4 {
		t.Fatalf("after refused changes: %+v %v", r, r.First)
	}
}

// Several replicas appending at once extend one linear chain.
func TestConcurrentReplicasDoNotForkTheChain(t *testing.T) {
	f := newLog(t)
	const replicas, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for r := range replicas {
		wg.Go(func() {
			db, err := postgres.Open(f.ctx, testenv.DatabaseURL(t), postgres.WithSchema(f.db.Schema()), postgres.WithMaxConns(2))
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			for i := range each {
				if err := audit.RecordNow(f.ctx, db, audit.Event{Action: audit.DocumentRead, Outcome: audit.Success, Actor: officer,
					Details: map[string]any{"replica": r, "i": i}}); err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					if _, err := f.log.MakeCheckpoint(f.ctx); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r := f.verify(t)
	if !r.OK() || r.Events != replicas*each || r.Checkpoints == 0 {
		t.Fatalf("after concurrent appends: %+v %v", r, r.First)
	}
}

func runtimeGOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
