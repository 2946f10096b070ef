package web

import (
	"encoding/base64"
	"net/http"
	"sort"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"kho"
	"kho/audit"
	"kho/policies"
)

// auditRow is one event as the security officer's search shows it.
type auditRow struct {
	Time                                                     time.Time
	Index                                                    uint64
	Actor, Action, Outcome, Purpose, Ground, Reason, Subject string
	LeafHash                                                 string
	Proof                                                    []string
	TreeSize                                                 uint64
	// ProofOK: the event's canonical bytes, hashed here, are proven by
	// its inclusion proof to be in the tree of the latest checkpoint.
	ProofOK bool
}

// bar is one agency's accesses in the chart.
type bar struct {
	Label          string
	Count, Width   int
	Y, TextY, Fail int
}

// security is the security officer's view of the trail: search by agency,
// action and outcome; each event with its inclusion proof; accesses per
// agency drawn as a chart; the trail verified on demand.
func (pt *Portal) security(w http.ResponseWriter, r *http.Request, v *view) error {
	ctx := r.Context()
	p := v.Session.Principal
	if err := policies.Authorize(p, policies.SearchAudit, policies.Resource{}).Err(); err != nil {
		_ = pt.cfg.Audit.Record(ctx, audit.Event{Action: audit.AuditSearched, Outcome: audit.Denied, Actor: p, Reason: kho.ErrorMessage(err)})
		return err
	}
	q := r.URL.Query()
	f := audit.Filter{Agency: kho.AgencyCode(q.Get("agency")), Action: q.Get("action"), Outcome: q.Get("outcome"), Limit: 200}
	page, err := pt.cfg.Audit.Search(ctx, f)
	if err != nil {
		return err
	}
	if err := pt.cfg.Audit.Record(ctx, audit.Event{Action: audit.AuditSearched, Outcome: audit.Success, Actor: p,
		Details: map[string]any{"results": len(page.Events), "via": "portal"}}); err != nil {
		return err
	}
	// The proofs were made for the page's checkpoint: its signed note,
	// verified here, gives the size and root they are checked against.
	var cp *audit.Checkpoint
	if page.Checkpoint != "" {
		if cp, err = pt.cfg.Audit.OpenCheckpoint(page.Checkpoint); err != nil {
			return err
		}
	}
	var rows []auditRow
	counts, denied := map[string]int{}, map[string]int{}
	for _, e := range page.Events {
		x := e.Entry
		at, _ := time.Parse(time.RFC3339Nano, x.Time)
		row := auditRow{Time: at, Index: x.Index, Actor: x.ActorKind, Action: x.Action, Outcome: x.Outcome, Purpose: x.Purpose,
			Reason: x.Reason, Subject: x.Subject, LeafHash: e.LeafHash}
		if x.ActorAgency != "" {
			row.Actor = pt.name(ctx, v.Lang, "agency", x.ActorAgency)
		}
		switch {
		case x.LegalBasis != "":
			row.Ground = x.LegalBasis
		case x.ConsentID != "":
			row.Ground = x.ConsentID
		}
		if e.Proof != nil {
			row.TreeSize = e.Proof.TreeSize
			for _, h := range e.Proof.Hashes {
				row.Proof = append(row.Proof, base64.StdEncoding.EncodeToString(h))
			}
			if cp != nil && cp.Size == e.Proof.TreeSize {
				leaf := rfc6962.DefaultHasher.HashLeaf([]byte(e.Canonical))
				row.ProofOK = proof.VerifyInclusion(rfc6962.DefaultHasher, x.Index, cp.Size, leaf, e.Proof.Hashes, cp.Root) == nil
			}
		}
		rows = append(rows, row)
		if x.Action == audit.DocumentRead && x.ActorAgency != "" {
			name := pt.name(ctx, v.Lang, "agency", x.ActorAgency)
			if x.Outcome == audit.Success {
				counts[name]++
			} else {
				denied[name]++
			}
		}
	}
	v.Title = v.T("sec.title")
	anomalies, err := pt.cfg.Audit.Anomalies(ctx, time.Now())
	if err != nil {
		return err
	}
	type flag struct {
		Kind, Agency, AgencyName, Staff, Window string
		Observed                                int
		Baseline                                float64
	}
	var flags []flag
	for _, a := range anomalies {
		flags = append(flags, flag{Kind: "anom." + a.Kind, Agency: a.Agency, AgencyName: pt.name(ctx, v.Lang, "agency", a.Agency), Staff: a.Staff,
			Window: a.Window, Observed: a.Observed, Baseline: a.Baseline})
	}
	chart := bars(counts, denied)
	v.Data = map[string]any{"Rows": rows, "Filter": f, "Bars": chart, "ChartH": 24 + 44*len(chart), "Checkpoint": page.Checkpoint, "Verify": nil, "Flags": flags}
	if r.Method == http.MethodPost {
		res, err := pt.cfg.Audit.Verify(ctx)
		if err != nil {
			return err
		}
		v.Data.(map[string]any)["Verify"] = res
	}
	return pt.render(w, http.StatusOK, "security", v)
}

// bars lays out the chart: one bar per agency, longest first.
func bars(ok, denied map[string]int) []bar {
	names := map[string]bool{}
	for k := range ok {
		names[k] = true
	}
	for k := range denied {
		names[k] = true
	}
	var out []bar
	most := 1
	for k := range names {
		out = append(out, bar{Label: k, Count: ok[k], Fail: denied[k]})
		most = max(most, ok[k]+denied[k])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count+out[i].Fail > out[j].Count+out[j].Fail })
	for i := range out {
		out[i].Width = 1 + 300*out[i].Count/most
		out[i].Y = 20 + i*44
		out[i].TextY = out[i].Y - 5
	}
	return out
}

// export streams the trail as JSON Lines, for `kho audit verify`.
func (pt *Portal) export(w http.ResponseWriter, r *http.Request, v *view) error {
	ctx := r.Context()
	p := v.Session.Principal
	if err := policies.Authorize(p, policies.SearchAudit, policies.Resource{}).Err(); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="kho-audit.jsonl"`)
	n, err := pt.cfg.Audit.Export(ctx, w, audit.Filter{})
	if err != nil {
		return err
	}
	return pt.cfg.Audit.Record(ctx, audit.Event{Action: audit.AuditExported, Outcome: audit.Success, Actor: p, Details: map[string]any{"events": n, "via": "portal"}})
}
