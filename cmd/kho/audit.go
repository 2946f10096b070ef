package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"kho"
	"kho/audit"
	"kho/signing"
	"kho/vault"
)

// runAudit verifies an export offline: `kho audit verify FILE --key KEY`.
// It needs nothing but the file and the log's public key (khod serves it at
// /audit/key; obtain it from a source you trust, not from the export).
func runAudit(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return usagef(`audit needs a command: verify`)
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	key := fs.String("key", "", "the log's verifier key, as served at /audit/key [required, or --key-file]")
	keyFile := fs.String("key-file", "", "file holding the verifier key")
	origin := fs.String("origin", "kho.local/audit", "the log's origin (khod's --audit-origin)")
	// The export is the one argument, before or after the flags.
	pos, err := parseArgs(fs, args[1:], stdout, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("audit verify: name the export file")
	}
	file := pos[0]
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("audit verify: --key-file: %v", err)
		}
		*key = strings.TrimSpace(string(b))
	}
	if *key == "" {
		return usagef("audit verify: --key (or --key-file) is required: the log's public key, from a source you trust")
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
	fmt.Fprintf(stdout, "the signed checkpoints cover events 0 to %d; %d events in the export lie outside them\n", int64(res.Covered)-1, res.Outside)
	if !res.OK() {
		return fmt.Errorf("audit verify: NOT VALID: first problem at %s", res.First)
	}
	fmt.Fprintln(stdout, "valid: every event in the export is covered by a signed checkpoint, complete and unaltered")
	return nil
}

// runVerify reports on the signatures inside a PDF: kho verify FILE.pdf
// [--root ROOT.pem]. The deployment root comes from --root, else from the
// dev stack's Vault.
func runVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	rootFile := fs.String("root", "", "PEM file of the deployment's root CA (default: the dev stack's)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	tsaRoot := fs.String("tsa-root", "", "PEM file of the timestamp authorities' roots whose tokens prove when a signature existed (default: none; chains are judged now)")
	pos, err := parseArgs(fs, args, stdout, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("verify: name the PDF to verify")
	}
	file := pos[0]
	pdf, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("verify: %v", err)
	}
	var root *x509.Certificate
	if *rootFile != "" {
		b, err := os.ReadFile(*rootFile)
		if err != nil {
			return fmt.Errorf("verify: --root: %v", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return errors.New("verify: --root is not a PEM certificate")
		}
		if root, err = x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("verify: --root: %v", err)
		}
	} else {
		s, err := openStack(io.Discard)
		if err != nil {
			return errors.New("verify: give --root (the deployment's root CA), or run inside a checkout with the dev stack up")
		}
		st, err := s.LoadState()
		if err != nil {
			return err
		}
		api, err := vault.NewAPIClient(st.VaultAddr, st.VaultRootToken, 10*time.Second)
		if err != nil {
			return err
		}
		tr, err := vault.NewTransitWith(api)
		if err != nil {
			return err
		}
		if root, err = tr.RootCertificate(ctx); err != nil {
			return err
		}
	}
	opts := signing.VerifyOptions{Root: root}
	if *tsaRoot != "" {
		if opts.TSARoots, err = signing.LoadCertPool(*tsaRoot); err != nil {
			return fmt.Errorf("verify: --tsa-root: %s", kho.ErrorMessage(err))
		}
	}
	rep, err := signing.VerifyWith(pdf, opts)
	if err != nil {
		return fmt.Errorf("verify: %s", kho.ErrorMessage(err))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s: %d signature(s)\n", file, len(rep.Signatures))
		for i, s := range rep.Signatures {
			if s.Kind == "document timestamp" {
				fmt.Fprintf(stdout, "#%d %s: document timestamp by %s at %s\n  token over the revision: %s\n  authority: %s\n", i+1, s.Field, s.Signer,
					s.SigningTime.Format(time.RFC3339), okText(s.Valid, s.Error), okText(s.ChainTrusted, s.ChainError))
				continue
			}
			fmt.Fprintf(stdout, "#%d %s\n  signer: %s (issued by %s)\n  signed at: %s (claimed)   level: %s\n", i+1, s.Field, s.Signer, s.Issuer, s.SigningTime.Format(time.RFC3339), s.Level)
			fmt.Fprintf(stdout, "  signature: %s\n  chain to the deployment root: %s\n", okText(s.Valid, s.Error), okText(s.ChainTrusted, s.ChainError))
			if s.Revocation != "" {
				fmt.Fprintf(stdout, "  revocation (from the PDF's DSS): %s\n", s.Revocation)
			}
			if s.LaterRevisions {
				fmt.Fprintln(stdout, "  later revisions were appended after this signature (the signed revision is checked above)")
			}
			if s.Timestamp != nil {
				trust := "its authority is not among the trusted timestamp authorities: it proves no time"
				if s.Timestamp.Trusted {
					trust = "by a trusted timestamp authority: it proves the time"
				}
				fmt.Fprintf(stdout, "  timestamp: %s, from %s, at %s; %s\n", okText(s.Timestamp.Valid, s.Timestamp.Error), s.Timestamp.Authority, s.Timestamp.Time.Format(time.RFC3339), trust)
			}
		}
	}
	if !rep.Valid {
		if rep.Error != "" {
			return fmt.Errorf("verify: NOT VALID: %s", rep.Error)
		}
		return errors.New("verify: NOT VALID")
	}
	return nil
}

func okText(ok bool, why string) string {
	if ok {
		return "valid"
	}
	if why == "" {
		return "NOT VALID"
	}
	return "NOT VALID: " + why
}
