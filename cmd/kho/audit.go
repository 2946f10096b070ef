package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"kho/audit"
)

// runAudit verifies an export offline: `kho audit verify FILE --key KEY`.
// It needs nothing but the file and the log's public key (khod serves it at
// /audit/key; obtain it from a source you trust, not from the export).
func runAudit(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New(`audit needs a command: verify`)
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	key := fs.String("key", "", "the log's verifier key, as served at /audit/key [required, or --key-file]")
	keyFile := fs.String("key-file", "", "file holding the verifier key")
	origin := fs.String("origin", "kho.local/audit", "the log's origin (khod's --audit-origin)")
	// The export is the one positional argument, before or after the flags.
	var file string
	rest := args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: kho audit verify EXPORT.jsonl --key KEY [--origin ORIGIN]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
		}
		return err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("audit verify: unexpected argument %q", fs.Arg(0))
	}
	if file == "" {
		return errors.New("audit verify: name the export file")
	}
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("audit verify: --key-file: %v", err)
		}
		*key = strings.TrimSpace(string(b))
	}
	if *key == "" {
		return errors.New("audit verify: --key (or --key-file) is required: the log's public key, from a source you trust")
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("audit verify: %v", err)
	}
	defer f.Close()
	res, err := audit.VerifyExport(f, *key, *origin)
	if err != nil {
		return fmt.Errorf("audit verify: %v", err)
	}
	fmt.Fprintf(stdout, "%d events, %d signed checkpoints matched, %d inclusion proofs checked\n", res.Events, res.Checkpoints, res.Proofs)
	if !res.OK() {
		return fmt.Errorf("audit verify: NOT VALID: first problem at %s", res.First)
	}
	fmt.Fprintln(stdout, "valid: the export is complete and unaltered as far as the signed checkpoints reach")
	return nil
}
