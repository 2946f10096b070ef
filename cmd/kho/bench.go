package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"kho/internal/bench"
)

// runBench measures kho beside MinIO on the dev stack (internal/bench) and
// writes a table, JSON and an SVG chart.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	sizes := fs.String("sizes", "1KiB,1MiB,64MiB", "document `sizes` to measure, comma-separated")
	concs := fs.String("concurrency", "1,8,32", "`levels` of concurrency, comma-separated")
	ops := fs.String("ops", strings.Join(bench.AllOps, ","), "`operations` to measure: "+strings.Join(bench.AllOps, ", "))
	dur := fs.Duration("duration", 3*time.Second, "how long each cell runs")
	memory := fs.String("memory", "1GiB", "`size` of the document deposited and downloaded once to watch khod's memory (0: skip)")
	profile := fs.String("profile", "", "take a CPU profile of khod during this `operation`'s cells (go tool pprof reads it)")
	out := fs.String("out", "", "`folder` for bench.json, bench.svg, bench.md, profiles and khod's log (default: .kho/bench)")
	bin := fs.String("bin", "", "khod binary (default: khod next to this kho binary)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	cfg := bench.Config{Duration: *dur, Progress: stderr, Profile: *profile}
	if cfg.Duration < 100*time.Millisecond {
		return usagef("bench: --duration must be at least 100ms")
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := bench.ParseSize(strings.TrimSpace(s))
		if err != nil {
			return usagef("bench: --sizes: %v", err)
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	for _, s := range strings.Split(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 256 {
			return usagef("bench: --concurrency: %q is not a number from 1 to 256", s)
		}
		cfg.Concurrency = append(cfg.Concurrency, n)
	}
	for _, s := range strings.Split(*ops, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(bench.AllOps, s) {
			return usagef("bench: --ops: unknown operation %q (use %s)", s, strings.Join(bench.AllOps, ", "))
		}
		cfg.Ops = append(cfg.Ops, s)
	}
	if cfg.Profile != "" && !slices.Contains(cfg.Ops, cfg.Profile) {
		return usagef("bench: --profile names %q, which is not among --ops", cfg.Profile)
	}
	if *memory != "0" {
		n, err := bench.ParseSize(*memory)
		if err != nil {
			return usagef("bench: --memory: %v", err)
		}
		cfg.Memory, cfg.MemorySize = true, n
	}
	s, err := openStack(io.Discard)
	if err != nil {
		return err
	}
	if cfg.State, err = s.LoadState(); err != nil {
		return err
	}
	cfg.Stack = s
	cfg.Dir = *out
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(s.StateDir, "bench")
	}
	cfg.KhodBin = *bin
	if cfg.KhodBin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.KhodBin = filepath.Join(filepath.Dir(self), "khod")
	}
	cells := len(cfg.Sizes) * len(cfg.Concurrency) * len(cfg.Ops)
	fmt.Fprintf(stderr, "kho bench: %d cells of %s each, kho beside MinIO on the dev stack; results in %s\n", cells, cfg.Duration, cfg.Dir)
	rep, err := bench.Run(ctx, cfg)
	if rep != nil && len(rep.Results) > 0 {
		rep.Version = version
		rep.WriteTable(stdout)
		var md strings.Builder
		rep.WriteTable(&md)
		werr := errors.Join(rep.WriteJSON(filepath.Join(cfg.Dir, "bench.json")), rep.WriteSVG(filepath.Join(cfg.Dir, "bench.svg")),
			os.WriteFile(filepath.Join(cfg.Dir, "bench.md"), []byte(md.String()), 0o644))
		if werr != nil && err == nil {
			err = werr
		}
		for _, p := range rep.Profiles {
			fmt.Fprintf(stdout, "\nkhod's CPU profile: go tool pprof -top %s\n", p)
		}
		fmt.Fprintf(stdout, "\nwritten: %s, bench.svg, bench.md\n", filepath.Join(cfg.Dir, "bench.json"))
	}
	if err != nil {
		return fmt.Errorf("bench: %v", err)
	}
	for _, r := range rep.Results {
		if r.Errors > 0 {
			return fmt.Errorf("bench: %d %s operations failed at %s c=%d: %s", r.Errors, r.Op, bench.SizeName(r.Size), r.Concurrency, r.FirstError)
		}
	}
	return nil
}
