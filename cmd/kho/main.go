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
  kho policy explain --agency CODE --kind KIND --procedure P --type T [--consent] [--action fetch|list]
                      say whether the reuse policy admits a request, and why

Run "kho <command> -h" for a command's options.
`

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
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args[1:], stdout)
	case "demo":
		if len(args) < 2 || args[1] != "seed" {
			return errors.New(`unknown demo command: use "kho demo seed"`)
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
	default:
		return fmt.Errorf("unknown command %q (kho -h lists the commands)", args[0])
	}
}

// parseFlags parses a subcommand's flags, turning flag's multi-line complaints
// into one line and printing usage only for -h.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage of kho %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
