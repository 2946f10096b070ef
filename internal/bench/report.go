package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"slices"
	"strings"
)

// find returns the cell for op at size and concurrency, if it ran.
func (rep *Report) find(op string, size int64, c int) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Op == op && r.Size == size && r.Concurrency == c && r.Ops > 0 {
			return r
		}
	}
	return nil
}

// Ratio is kho's throughput over MinIO's for one pair of operations.
type Ratio struct {
	Name        string  `json:"name"`
	Size        int64   `json:"size"`
	Concurrency int     `json:"concurrency"`
	Value       float64 `json:"value"`
}

var ratioPairs = [][3]string{
	{"fetch / raw GET", OpFetch, OpRawGet},
	{"fetch / SSE GET", OpFetch, OpSSEGet},
	{"download / raw GET", OpDownload, OpRawGet},
	{"deposit / raw PUT", OpDeposit, OpRawPut},
	{"deposit / SSE PUT", OpDeposit, OpSSEPut},
}

// Ratios compares kho with MinIO cell by cell.
func (rep *Report) Ratios() []Ratio {
	var out []Ratio
	seen := map[[2]int64]bool{}
	for _, r := range rep.Results {
		k := [2]int64{r.Size, int64(r.Concurrency)}
		if seen[k] {
			continue
		}
		seen[k] = true
		for _, p := range ratioPairs {
			a, b := rep.find(p[1], r.Size, r.Concurrency), rep.find(p[2], r.Size, r.Concurrency)
			if a != nil && b != nil && b.MBps > 0 {
				out = append(out, Ratio{Name: p[0], Size: r.Size, Concurrency: r.Concurrency, Value: a.MBps / b.MBps})
			}
		}
	}
	return out
}

// Target is one of the performance goals and whether this run met it.
type Target struct {
	Goal     string  `json:"goal"`
	Measured string  `json:"measured"`
	Met      bool    `json:"met"`
	value    float64 // for sorting out what is missing
}

// Targets checks the run against kho's performance goals, for the cells it
// measured (1 MiB at concurrency 32; the memory run).
func (rep *Report) Targets() []Target {
	var out []Target
	const size, c = 1 << 20, 32
	ratio := func(goal, a, b string, want float64) {
		x, y := rep.find(a, size, c), rep.find(b, size, c)
		if x == nil || y == nil || y.MBps == 0 {
			return
		}
		v := x.MBps / y.MBps
		out = append(out, Target{Goal: goal, Measured: fmt.Sprintf("%.2f×", v), Met: v >= want, value: v})
	}
	ratio("1 MiB, c=32: consent-checked fetch ≥ 0.8× raw GET", OpFetch, OpRawGet, 0.8)
	ratio("1 MiB, c=32: consent-checked fetch ≥ 1.0× MinIO SSE GET", OpFetch, OpSSEGet, 1.0)
	ratio("1 MiB, c=32: deposit ≥ 0.6× raw PUT", OpDeposit, OpRawPut, 0.6)
	perMiB := func(goal, op string, want float64) {
		x := rep.find(op, size, c)
		if x == nil {
			return
		}
		v := x.CPUms["khod"] / (float64(size) / (1 << 20))
		out = append(out, Target{Goal: goal, Measured: fmt.Sprintf("%.2f ms", v), Met: v <= want, value: v})
	}
	perMiB("1 MiB, c=32: khod CPU ≤ 2 ms per MiB fetched", OpFetch, 2)
	perMiB("1 MiB, c=32: khod CPU ≤ 3 ms per MiB deposited", OpDeposit, 3)
	if d, p := rep.find(OpDeposit, size, c), rep.find(OpRawPut, size, c); d != nil && p != nil && p.CPUms["minio"] > 0 {
		v := d.CPUms["minio"] / p.CPUms["minio"]
		out = append(out, Target{Goal: "1 MiB, c=32: MinIO CPU per kho deposit ≤ 1.2× per raw PUT", Measured: fmt.Sprintf("%.2f×", v), Met: v <= 1.2, value: v})
	}
	if m := rep.Memory; m != nil {
		name := SizeName(m.Size)
		out = append(out,
			Target{Goal: name + " deposit grows khod's RSS by < 64 MiB", Measured: fmt.Sprintf("%.1f MiB", m.DepositRSSGrowMiB), Met: m.DepositRSSGrowMiB < 64},
			Target{Goal: name + " download grows khod's RSS by < 64 MiB", Measured: fmt.Sprintf("%.1f MiB", m.DownloadRSSGrowMi), Met: m.DownloadRSSGrowMi < 64},
			Target{Goal: "allocations per MiB downloaded < 64 KiB", Measured: fmt.Sprintf("%.1f KiB", m.AllocPerMiBKiB), Met: m.AllocPerMiBKiB < 64},
		)
	}
	return out
}

// WriteTable prints the run as Markdown tables: every cell, the ratios, the
// targets.
func (rep *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nkho bench, %s; %s per cell; %s\n\n", rep.Started.Format("2006-01-02 15:04 UTC"), rep.Duration, rep.Machine)
	fmt.Fprintln(w, "| operation | size | c | MB/s | ops/s | p50 ms | p99 ms | khod CPU ms/op | MinIO CPU ms/op | Vault CPU ms/op | PostgreSQL CPU ms/op | client CPU ms/op | Vault calls/op | PostgreSQL calls/op | khod peak RSS MiB | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rep.Results {
		minioCPU := r.CPUms["minio"]
		if r.Op == OpSSEPut || r.Op == OpSSEGet {
			minioCPU = r.CPUms["minio-sse"]
		}
		dash := func(v float64, ok bool) string {
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%.2f", v)
		}
		kho := r.Calls != nil
		fmt.Fprintf(w, "| %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %s | %.2f | %.2f | %.2f | %.2f | %s | %s | %s | %d |\n",
			r.Op, SizeName(r.Size), r.Concurrency, r.MBps, r.OpsPerSec, r.P50ms, r.P99ms, dash(r.CPUms["khod"], kho), minioCPU,
			r.CPUms["vault"], r.CPUms["postgres"], r.CPUms["client"], dash(r.Calls["vault"], kho), dash(r.Calls["postgres"], kho),
			dash(r.KhodPeakRSSMiB, kho), r.Errors)
	}
	if ratios := rep.Ratios(); len(ratios) > 0 {
		fmt.Fprintln(w, "\nkho's throughput over MinIO's, same bytes, same run:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| size | c | "+strings.Join(pairNames(), " | ")+" |")
		fmt.Fprintln(w, "|---|---|"+strings.Repeat("---|", len(ratioPairs)))
		type key struct {
			size int64
			c    int
		}
		var keys []key
		vals := map[key]map[string]float64{}
		for _, x := range ratios {
			k := key{x.Size, x.Concurrency}
			if vals[k] == nil {
				vals[k] = map[string]float64{}
				keys = append(keys, k)
			}
			vals[k][x.Name] = x.Value
		}
		for _, k := range keys {
			row := []string{SizeName(k.size), fmt.Sprint(k.c)}
			for _, n := range pairNames() {
				if v, ok := vals[k][n]; ok {
					row = append(row, fmt.Sprintf("%.2f", v))
				} else {
					row = append(row, "–")
				}
			}
			fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
		}
	}
	if m := rep.Memory; m != nil {
		fmt.Fprintf(w, "\n%s document: deposit %.1f MB/s, khod's RSS +%.1f MiB; download %.1f MB/s, khod's RSS +%.1f MiB, %.1f KiB allocated per MiB served\n",
			SizeName(m.Size), m.DepositMBps, m.DepositRSSGrowMiB, m.DownloadMBps, m.DownloadRSSGrowMi, m.AllocPerMiBKiB)
	}
	if ts := rep.Targets(); len(ts) > 0 {
		fmt.Fprintln(w, "\nTargets:")
		for _, t := range ts {
			mark := "met    "
			if !t.Met {
				mark = "NOT MET"
			}
			fmt.Fprintf(w, "  %s  %s (measured %s)\n", mark, t.Goal, t.Measured)
		}
	}
}

func pairNames() []string {
	var out []string
	for _, p := range ratioPairs {
		out = append(out, p[0])
	}
	return out
}

// WriteJSON writes the report with its ratios and targets.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(struct {
		*Report
		Ratios  []Ratio  `json:"ratios"`
		Targets []Target `json:"targets"`
	}{rep, rep.Ratios(), rep.Targets()}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

var opColors = map[string]string{
	OpDeposit: "#1b6ca8", OpRawPut: "#8fb8de", OpSSEPut: "#c9ddef",
	OpDownload: "#2e7d32", OpFetch: "#c0392b", OpRawGet: "#a5d6a7", OpSSEGet: "#f3b3aa",
}

// WriteSVG draws MB/s by operation, one panel a size, bars grouped by
// concurrency.
func (rep *Report) WriteSVG(path string) error {
	var sizes []int64
	var concs []int
	var ops []string
	for _, r := range rep.Results {
		if !slices.Contains(sizes, r.Size) {
			sizes = append(sizes, r.Size)
		}
		if !slices.Contains(concs, r.Concurrency) {
			concs = append(concs, r.Concurrency)
		}
		if !slices.Contains(ops, r.Op) {
			ops = append(ops, r.Op)
		}
	}
	const width, panelH, top, left, bar = 960, 240, 40, 70, 14
	height := top + len(sizes)*(panelH+50) + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<title>kho bench: MB/s by operation</title><rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">kho bench — MB/s, kho beside MinIO (%s)</text>`+"\n", left, html.EscapeString(rep.Started.Format("2006-01-02")))
	for i, op := range ops {
		x := left + i*125
		fmt.Fprintf(&b, `<rect x="%d" y="28" width="10" height="10" fill="%s"/><text x="%d" y="37">%s</text>`+"\n", x, opColors[op], x+14, op)
	}
	for si, size := range sizes {
		y0 := top + 20 + si*(panelH+50)
		var maxV float64
		for _, r := range rep.Results {
			if r.Size == size && r.MBps > maxV {
				maxV = r.MBps
			}
		}
		if maxV == 0 {
			maxV = 1
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left, y0+12, SizeName(size))
		base := y0 + panelH
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", left, base, width-20, base)
		for t := 0; t <= 4; t++ {
			v := maxV * float64(t) / 4
			y := base - int(float64(panelH-25)*float64(t)/4)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="#555">%.0f</text><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#eee"/>`+"\n", left-6, y+4, v, left, y, width-20, y)
		}
		groupW := (width - 20 - left) / max(1, len(concs))
		for ci, c := range concs {
			gx := left + ci*groupW + 10
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">c=%d</text>`+"\n", gx+len(ops)*bar/2, base+16, c)
			for oi, op := range ops {
				r := rep.find(op, size, c)
				if r == nil {
					continue
				}
				h := int(float64(panelH-25) * r.MBps / maxV)
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s %s c=%d: %.1f MB/s</title></rect>`+"\n",
					gx+oi*bar, base-h, bar-2, h, opColors[op], op, SizeName(size), c, r.MBps)
			}
		}
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
