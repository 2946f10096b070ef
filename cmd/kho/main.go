// Command kho is the operator's CLI: it runs the dev stack, applies
// migrations, seeds demo data, mints dev tokens and bootstraps a real Vault
// and MinIO for khod.
//
//	kho dev up|down|status|env|token|khod   the dev stack on this machine
//	kho migrate [--status]                   apply (or show) database migrations
//	kho demo seed                            load the demo users and catalogue
//	kho init                                 prepare Vault and MinIO for khod
//	kho keys rotate|rewrap                   rotate subject keys, rewrap file keys
//	kho reconcile                            remove orphan objects
//	kho audit verify                         verify an audit export offline
//	kho catalogue load, kho policy explain   the catalogue and the reuse policy
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"kho/internal/devstack"
)

const usage = `kho — operator CLI of the kho personal-data warehouse

Usage:
  kho dev up          start PostgreSQL, MinIO and Vault on loopback (builds MinIO and Vault once)
  kho dev down        stop what kho dev up started (data stays in .kho/)
  kho dev status      each service's address, pid and health
  kho dev env         khod's environment for the dev stack, as shell exports
  kho dev token --as citizen:<id>|business:<code>:<id>|agency:<code>|officer:<code>:<staff>|security:<staff>|operator:<staff>
                      print a dev bearer token
  kho dev khod        run khod against the dev stack (in the foreground)
  kho migrate         apply pending database migrations (--status: only show)
  kho demo seed       load the demo citizens, business, agencies and catalogue
  kho init            bootstrap a Vault and MinIO for khod (operator credentials from the environment)
  kho keys rotate --subject <id>
                      add a version to a store's key
  kho keys rewrap     move every file key to its store's latest key version (batched, resumable,
                      with progress; no ciphertext is touched), then retire the old versions
  kho reconcile       remove objects no document refers to (khod also does this periodically)
  kho audit verify EXPORT.jsonl --key KEY
                      check an audit export offline with only the log's public key
  kho catalogue load [FILE]
                      load the catalogue of procedures and document types (default: the sample shipped)
  kho verify FILE.pdf [--root ROOT.pem]
                      report on the signatures inside a PDF: signer, integrity, chain, time, timestamp
  kho agency register --code CODE --jwks FILE
                      register an agency system's public keys (signing client assertions, receiving deliveries)
  kho agency retire-key --code CODE --kid KID
                      stop accepting one of them (rotation)
  kho agency webhook --code CODE --url URL
                      where kho POSTs the agency's signed events (revocations, consent changes)
  kho outbox list [--state dead]
                      webhook deliveries, with attempts and errors
  kho outbox replay --id N
                      try a dead delivery again
  kho receipt verify FILE --jwks JWKS
                      check a consent or use receipt, a QR summary or an event offline, with kho's published keys
  kho policy explain --agency CODE --kind KIND --procedure P --type T [--consent] [--action fetch|list]
                      say whether the reuse policy admits a request, and why

  kho bench           measure deposits, downloads and fetches beside MinIO on the dev stack
                      (table, bench.json and bench.svg in .kho/bench; kho bench -h for sizes and concurrency)

  kho version         print the version

Flags may come before or after a command's arguments. Run "kho <command> -h"
for a command's options and an example. Exit status: 0 success, 1 the
command failed, 2 the command line was not understood.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if errors.Is(err, errReported) {
		os.Exit(1)
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "kho: "+errorLine(err))
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kho: "+errorLine(err))
		var le *devstack.LogError
		if errors.As(err, &le) && le.Tail != "" {
			for _, l := range strings.Split(le.Tail, "\n") {
				fmt.Fprintln(os.Stderr, "  | "+l)
			}
		}
		os.Exit(1)
	}
}

// errReported is returned when a child process already printed why it failed.
var errReported = errors.New("failed (reported above)")

// errorLine flattens an error chain (database and Vault errors span lines)
// into the one line the CLI prints.
func errorLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if groups[args[0]] && len(args) > 1 && (args[1] == "-h" || args[1] == "--help" || args[1] == "help") {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch args[0] {
	case "version", "--version":
		if len(args) > 1 && (args[1] == "-h" || args[1] == "--help") {
			fmt.Fprintln(stdout, "Usage of kho version: print kho's version.\n\nExample:\n  kho version")
			return nil
		}
		if len(args) > 1 {
			return usagef("version: unexpected argument %q", args[1])
		}
		fmt.Fprintln(stdout, "kho "+version)
		return nil
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args[1:], stdout)
	case "demo":
		if len(args) < 2 || args[1] != "seed" {
			return usagef(`unknown demo command: use "kho demo seed"`)
		}
		return runSeed(ctx, args[2:], stdout)
	case "init":
		return runInit(ctx, args[1:], stdout)
	case "keys":
		return runKeys(ctx, args[1:], stdout)
	case "reconcile":
		return runReconcile(ctx, args[1:], stdout)
	case "audit":
		return runAudit(ctx, args[1:], stdout)
	case "catalogue":
		return runCatalogue(ctx, args[1:], stdout)
	case "policy":
		return runPolicy(ctx, args[1:], stdout)
	case "verify":
		return runVerify(ctx, args[1:], stdout)
	case "agency":
		return runAgency(ctx, args[1:], stdout)
	case "outbox":
		return runOutbox(ctx, args[1:], stdout)
	case "receipt":
		return runReceipt(ctx, args[1:], stdout)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	default:
		return usagef("unknown command %q (kho -h lists the commands)", args[0])
	}
}

// groups are the commands that take a command of their own.
var groups = map[string]bool{"dev": true, "demo": true, "keys": true, "audit": true, "catalogue": true, "policy": true, "agency": true, "outbox": true, "receipt": true}

// usageError is a command line kho cannot make sense of: it exits 2, as
// opposed to 1 for a command that ran and failed.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// examples shows each command's use in one line, under its -h.
var examples = map[string]string{
	"dev up":            "kho dev up",
	"dev down":          "kho dev down",
	"dev status":        "kho dev status",
	"dev env":           "eval \"$(kho dev env)\"",
	"dev token":         "kho dev token --as citizen:001090000001",
	"dev khod":          "kho dev khod --listen 127.0.0.1:8480",
	"migrate":           "kho migrate --status",
	"demo seed":         "kho demo seed",
	"init":              "VAULT_TOKEN=... MINIO_ROOT_USER=... MINIO_ROOT_PASSWORD=... kho init --vault-addr https://vault:8200 --minio-endpoint https://minio:9000 --out /etc/kho/secrets --khod-cidr 10.0.1.0/24 --public-url https://kho.example.vn",
	"keys rotate":       "kho keys rotate --subject 001090000001",
	"keys rewrap":       "kho keys rewrap --batch 200",
	"reconcile":         "kho reconcile --grace 1h",
	"audit verify":      "kho audit verify audit.jsonl --key-file audit.key",
	"catalogue load":    "kho catalogue load policies/catalogue/catalogue.json",
	"verify":            "kho verify signed.pdf --root root.pem --json",
	"agency register":   "kho agency register --code 000.00.15.H29 --jwks police-system.jwks.json",
	"agency retire-key": "kho agency retire-key --code 000.00.15.H29 --kid 2026-01",
	"agency webhook":    "kho agency webhook --code 000.00.15.H29 --url https://hethong.congan.example/kho-events",
	"outbox list":       "kho outbox list --state dead",
	"receipt verify":    "kho receipt verify use-receipt.jws --jwks jwks.json",
	"outbox replay":     "kho outbox replay --id 42",
	"policy explain":    "kho policy explain --agency 000.00.15.H29 --kind police --procedure CHC --type GKS --consent",
	"bench":             "kho bench --sizes 1MiB --concurrency 32 --ops fetch,raw-get --profile fetch",
}

// parseFlags parses a subcommand's flags, which take no argument besides
// its flags, turning flag's multi-line complaints into one line and printing
// usage (with an example) only for -h.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	_, err := parseArgs(fs, args, stdout, 0)
	return err
}

// parseArgs parses a subcommand's flags and up to max arguments, which may
// come before, between or after the flags (after "--", everything is an
// argument).
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer, max int) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "Usage of kho %s:\n", fs.Name())
			fs.PrintDefaults()
			if ex := examples[fs.Name()]; ex != "" {
				fmt.Fprintf(stdout, "\nExample:\n  %s\n", ex)
			}
			return nil, err
		}
		if err != nil {
			return nil, usagef("%s: %v (kho %s -h lists its options)", fs.Name(), err, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
	if len(positional) > max {
		return nil, usagef("%s: unexpected argument %q", fs.Name(), positional[max])
	}
	return positional, nil
}
