package audit_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"kho"
	"kho/audit"
)

func TestExportVerifiesOffline(t *testing.T) {
	f := newLog(t)
	f.fill(t, 30, 8)
	vkey := f.log.VerifierKey()
	// Checkpoints at 8, 16 and 24: an export of the log as it stands has a
	// tail of 6 events nothing proves, and does not verify.
	var buf bytes.Buffer
	if n, err := f.log.Export(f.ctx, &buf, audit.Filter{}); err != nil || n != 30 {
		t.Fatalf("export: %d %v", n, err)
	}
	r, err := audit.VerifyExport(bytes.NewReader(buf.Bytes()), vkey, origin)
	if err != nil || r.OK() || r.Outside != 6 || r.Covered != 24 {
		t.Fatalf("export with an unproven tail: %+v %v", r, err)
	}
	// Cut at a checkpoint signed for it, the export is proven to its end.
	cp, err := f.log.MakeCheckpoint(f.ctx)
	if err != nil || cp.Size != 30 {
		t.Fatalf("checkpoint: %+v %v", cp, err)
	}
	buf.Reset()
	n, err := f.log.Export(f.ctx, &buf, audit.Filter{UpTo: cp.Size})
	if err != nil || n != 30 {
		t.Fatalf("export: %d %v", n, err)
	}
	export := buf.Bytes()
	r, err = audit.VerifyExport(bytes.NewReader(export), vkey, origin)
	if err != nil || !r.OK() || r.Events != 30 || r.Checkpoints != 4 || r.Proofs != 30 || r.Outside != 0 || r.Covered != 30 {
		t.Fatalf("untouched export: %+v %v %v", r, r.First, err)
	}

	lines := strings.Split(strings.TrimSpace(string(export)), "\n")
	edit := func(t *testing.T, mod func(lines []string) []string) *audit.Result {
		t.Helper()
		cp := append([]string(nil), lines...)
		r, err := audit.VerifyExport(strings.NewReader(strings.Join(mod(cp), "\n")), vkey, origin)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	eventLine := func(lines []string, index int) int {
		for i, l := range lines {
			if strings.Contains(l, `"type":"event"`) && strings.Contains(l, `"index":`+itoa(index)+`,`) {
				return i
			}
		}
		t.Fatalf("no line for event %d", index)
		return -1
	}
	tests := []struct {
		name  string
		mod   func([]string) []string
		index uint64
	}{
		{"fail/an event edited in the export", func(ls []string) []string {
			i := eventLine(ls, 11)
			ls[i] = strings.Replace(ls[i], `"outcome":"success"`, `"outcome":"denied"`, 1)
			return ls
		}, 11},
		{"fail/an event dropped from the export", func(ls []string) []string {
			i := eventLine(ls, 5)
			return append(ls[:i], ls[i+1:]...)
		}, 5},
		{"fail/the end cut off", func(ls []string) []string { return ls[:eventLine(ls, 20)] }, 20},
		{"fail/the last event edited", func(ls []string) []string {
			i := eventLine(ls, 29)
			ls[i] = strings.Replace(ls[i], `"outcome":"success"`, `"outcome":"denied"`, 1)
			return ls
		}, 29},
		{"fail/the last event cut off, the end line fixed", func(ls []string) []string {
			i := eventLine(ls, 29)
			return append(ls[:i], `{"type":"end","events":29}`)
		}, 29},
		{"fail/an event added after the last", func(ls []string) []string {
			i := eventLine(ls, 29)
			extra := strings.Replace(strings.Replace(ls[i], `"index":29,`, `"index":30,`, 1), `"proof"`, `"x"`, 1)
			return append(ls[:i+1], extra, `{"type":"end","events":31}`)
		}, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := edit(t, tt.mod)
			if r.OK() || r.First.Index != tt.index {
				t.Fatalf("first problem %v, want event %d", r.First, tt.index)
			}
		})
	}
	t.Run("fail/event 0 dropped from a full export, an event forged without its proof", func(t *testing.T) {
		r := edit(t, func(ls []string) []string {
			i := eventLine(ls, 0)
			ls = append(ls[:i], ls[i+1:]...)
			j := eventLine(ls, 11)
			ls[j] = strings.Replace(ls[j], `"proof"`, `"x"`, 1)
			return ls
		})
		if r.OK() || r.First.Index != 0 {
			t.Fatalf("first problem %v, want event 0", r.First)
		}
	})
	t.Run("fail/an empty full export", func(t *testing.T) {
		r := edit(t, func(ls []string) []string { return []string{ls[0], `{"type":"end"}`} })
		if r.OK() {
			t.Fatal("an empty full export verifies")
		}
	})
	t.Run("fail/the entry shown differs from what was hashed", func(t *testing.T) {
		r := edit(t, func(ls []string) []string {
			i := eventLine(ls, 7)
			ls[i] = strings.Replace(ls[i], `"entry":{`, `"entry":{"ACTION":"something.else",`, 1)
			return ls
		})
		if r.OK() || r.First.Index != 7 {
			t.Fatalf("first problem %v, want event 7", r.First)
		}
	})
	t.Run("fail/the scope changed to slice to skip the chain", func(t *testing.T) {
		r := edit(t, func(ls []string) []string {
			ls[0] = strings.Replace(ls[0], `"scope":"full"`, `"scope":"slice"`, 1)
			i := eventLine(ls, 3)
			ls[i] = strings.Replace(ls[i], `"proof"`, `"x"`, 1)
			return ls
		})
		if r.OK() {
			t.Fatal("a slice with an event without proof verifies")
		}
	})
	t.Run("fail/a forged checkpoint", func(t *testing.T) {
		r := edit(t, func(ls []string) []string {
			for i, l := range ls {
				if strings.Contains(l, `"type":"checkpoint"`) && strings.Contains(l, `\n16\n`) {
					ls[i] = strings.Replace(l, `\n16\n`, `\n17\n`, 1)
				}
			}
			return ls
		})
		if r.OK() || !strings.Contains(r.First.Reason, "signature") {
			t.Fatalf("forged checkpoint: %v", r.First)
		}
	})
	t.Run("fail/another key", func(t *testing.T) {
		other := newLog(t)
		r, err := audit.VerifyExport(bytes.NewReader(export), other.log.VerifierKey(), origin)
		if err != nil || r.OK() {
			t.Fatalf("export verified with another log's key: %v", err)
		}
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestSearchAccessLogAndProofs(t *testing.T) {
	f := newLog(t)
	f.fill(t, 12, 12)
	mine := kho.SubjectHandle("00000000-0000-4000-8000-000000000001")
	page, err := f.log.AccessLog(f.ctx, mine, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	// Events 1, 4, 7, 10 are on this store; newest first, three per page.
	if len(page.Events) != 3 || page.Events[0].Entry.Index != 10 || page.NextCursor != "4" || page.Checkpoint == "" {
		t.Fatalf("page: %d events, cursor %q", len(page.Events), page.NextCursor)
	}
	c, err := f.log.LatestCheckpoint(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range page.Events {
		if ev.Entry.Subject != string(mine) {
			t.Fatalf("another store's event: %+v", ev.Entry)
		}
		leaf, _ := ev.Entry.LeafHash()
		if ev.Proof == nil || proof.VerifyInclusion(rfc6962.DefaultHasher, ev.Entry.Index, c.Size, leaf, ev.Proof.Hashes, c.Root) != nil {
			t.Fatalf("event %d: no valid inclusion proof", ev.Entry.Index)
		}
	}
	next, err := f.log.AccessLog(f.ctx, mine, page.NextCursor, 3)
	if err != nil || len(next.Events) != 1 || next.Events[0].Entry.Index != 1 || next.NextCursor != "" {
		t.Fatalf("second page: %+v %v", next, err)
	}
	for _, bad := range []audit.Filter{{Subject: "x"}, {Outcome: "maybe"}, {Cursor: "-3"}, {Limit: 1000}, {Document: "x"}} {
		if _, err := f.log.Search(f.ctx, bad); kho.ErrorCode(err) != kho.EINVALID {
			t.Errorf("filter %+v: %v", bad, err)
		}
	}
	byStaff, err := f.log.Search(f.ctx, audit.Filter{Staff: "cb01", Outcome: audit.Success, From: time.Now().Add(-time.Hour)})
	if err != nil || len(byStaff.Events) != 12 {
		t.Fatalf("by staff: %v", err)
	}
}

func TestAnomalyFlags(t *testing.T) {
	f := newLog(t)
	now := func() time.Time { return time.Now().Add(time.Second) }
	if a, err := f.log.Anomalies(f.ctx, now()); err != nil || len(a) != 0 {
		t.Fatalf("quiet log: %v %v", a, err)
	}
	busy := kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: "G01", Staff: "cb99", TokenID: "t"}
	quiet := kho.Principal{Kind: kho.PrincipalAgency, Agency: "G02", TokenID: "t"}
	for i := range audit.OfficerSubjectLimit + 1 {
		h := kho.SubjectHandle("00000000-0000-4000-8000-" + strings.Repeat("0", 10) + itoa2(i))
		if err := audit.RecordNow(f.ctx, f.db, audit.Event{Action: audit.DocumentRead, Outcome: audit.Success, Actor: busy, Subject: h}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := audit.RecordNow(f.ctx, f.db, audit.Event{Action: audit.DocumentRead, Outcome: audit.Success, Actor: quiet}); err != nil {
			t.Fatal(err)
		}
	}
	for range audit.DenialSpikeMinimum + 1 {
		if err := audit.RecordNow(f.ctx, f.db, audit.Event{Action: audit.DocumentRead, Outcome: audit.Denied, Actor: quiet}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.log.Anomalies(f.ctx, now())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]audit.Anomaly{}
	for _, a := range got {
		kinds[a.Kind+"/"+a.Agency] = a
	}
	if _, ok := kinds["agency_spike/G01"]; !ok {
		t.Errorf("agency G01's spike not flagged: %+v", got)
	}
	if _, ok := kinds["agency_spike/G02"]; ok {
		t.Errorf("quiet agency G02 flagged: %+v", got)
	}
	if a, ok := kinds["officer_breadth/G01"]; !ok || a.Staff != "cb99" {
		t.Errorf("officer touching many stores not flagged: %+v", got)
	}
	if _, ok := kinds["denial_spike/"]; !ok {
		t.Errorf("denial spike not flagged: %+v", got)
	}
}

func itoa2(i int) string {
	s := itoa(i)
	return strings.Repeat("0", 2-len(s)) + s
}

// BenchmarkRecord8Writers appends with 8 concurrent writers, each with its
// own connection pool as separate khod replicas have, and checks the chain
// stayed linear.
func BenchmarkRecord8Writers(b *testing.B) {
	f := newLog(b)
	b.SetParallelism(8 / max(1, runtimeGOMAXPROCS()))
	var n atomic.Int64
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := audit.RecordNow(f.ctx, f.db, audit.Event{Action: audit.DocumentRead, Outcome: audit.Success, Actor: officer}); err != nil {
				b.Error(err)
				return
			}
			n.Add(1)
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "events/s")
	b.StopTimer()
	r, err := f.log.Verify(f.ctx)
	if err != nil || !r.OK() || r.Events != uint64(n.Load()) {
		b.Fatalf("chain after concurrent appends: %+v %v", r, err)
	}
}

// A slice that holds event 0 is a slice all the same: each event is proven
// by its inclusion proof, and it verifies.
func TestSliceWithEventZeroVerifies(t *testing.T) {
	f := newLog(t)
	f.fill(t, 12, 4)
	cp, err := f.log.MakeCheckpoint(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := f.log.Export(f.ctx, &buf, audit.Filter{Action: audit.DocumentRead, UpTo: cp.Size}); err != nil {
		t.Fatal(err)
	}
	r, err := audit.VerifyExport(bytes.NewReader(buf.Bytes()), f.log.VerifierKey(), origin)
	if err != nil || !r.OK() || r.Events == 0 || r.Proofs != int(r.Events) {
		t.Fatalf("slice: %+v %v", r, err)
	}
}

// A verifier that shares no code with kho (JavaScript, from the format the
// README documents) accepts an export cut at a checkpoint, and refuses one
// whose served bytes were changed.
func TestExportVerifiesWithAnIndependentVerifier(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the independent verifier (scripts/ensure-tools installs it)")
	}
	f := newLog(t)
	f.fill(t, 21, 8)
	cp, err := f.log.MakeCheckpoint(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := f.log.Export(f.ctx, &buf, audit.Filter{UpTo: cp.Size}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(export []byte) (string, error) {
		p := filepath.Join(dir, "export.jsonl")
		if err := os.WriteFile(p, export, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(node, "testdata/verify-export.mjs", p, f.log.VerifierKey()).CombinedOutput()
		return string(out), err
	}
	if out, err := run(buf.Bytes()); err != nil || !strings.Contains(out, "valid: 21 events") {
		t.Fatalf("independent verifier: %v\n%s", err, out)
	}
	// The served fields and the hashed bytes are the same data.
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var line audit.ExportLine
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if line.Type == "event" {
			var e audit.Entry
			if err := json.Unmarshal([]byte(line.Canonical), &e); err != nil || e.ID != line.Entry.ID || e.Index != line.Entry.Index {
				t.Fatalf("canonical bytes and fields differ: %s", l)
			}
		}
	}
	for name, mod := range map[string]func(string) string{
		"an outcome changed in the canonical bytes": func(s string) string {
			return strings.Replace(s, `\"outcome\":\"success\"`, `\"outcome\":\"denied\"`, 1)
		},
		"the entry shown differs from the canonical bytes": func(s string) string {
			return strings.Replace(s, `"entry":{`, `"entry":{"ACTION":"x",`, 1)
		},
		"the last event removed": func(s string) string {
			lines := strings.Split(strings.TrimSpace(s), "\n")
			for i := len(lines) - 1; i >= 0; i-- {
				if strings.Contains(lines[i], `"type":"event"`) {
					return strings.Join(append(lines[:i], lines[i+1:]...), "\n")
				}
			}
			return s
		},
	} {
		if out, err := run([]byte(mod(buf.String()))); err == nil || !strings.Contains(out, "NOT VALID") {
			t.Errorf("%s: accepted\n%s", name, out)
		}
	}
}
