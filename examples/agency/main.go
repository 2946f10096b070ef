// Command agency is an agency's case-handling system reusing documents
// through kho's Go client, end to end:
//
//	agency keys  -dir DIR                  make the system's key pairs
//	agency fetch -dir DIR -kho URL -agency CODE -subject ID -procedure CODE -out DIR
//
// keys writes sig.jwk.json and enc.jwk.json (private, mode 0600) and
// public.jwks.json, which kho's operator registers (kho agency register).
// fetch gets a token with the private key, asks which documents the
// procedure needs are already in the subject's store, asks the subject for
// consent where none admits the fetch yet and waits for the answer, then
// fetches each document, encrypted to the system's key, into the out
// folder, checking the issuer's signature and kho's use receipt, which it
// keeps beside the document.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "agency:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "keys" && args[0] != "fetch") {
		return errors.New("give a command: keys or fetch (-h for their flags)")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", "", "folder of the system's keys [required]")
	base := fs.String("kho", "http://127.0.0.1:8480", "kho's address")
	agency := fs.String("agency", "", "the agency's code, e.g. 000.00.15.H29")
	subject := fs.String("subject", "", "the subject's identification number")
	procedure := fs.String("procedure", "", "the procedure's code, e.g. CHC")
	out := fs.String("out", ".", "folder the documents are written to")
	wait := fs.Duration("wait", 10*time.Minute, "how long to wait for the subject's answer")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long the whole run may take")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	if args[0] == "keys" {
		return makeKeys(*dir)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *agency == "" || *subject == "" || *procedure == "" {
		return errors.New("fetch needs -agency, -subject and -procedure")
	}
	sig, err := readKey(filepath.Join(*dir, "sig.jwk.json"))
	if err != nil {
		return err
	}
	enc, err := readKey(filepath.Join(*dir, "enc.jwk.json"))
	if err != nil {
		return err
	}
	kho := client.New(*base, &client.TokenSource{Agency: *agency, TokenURL: *base + "/oauth/token", Key: sig}, enc)

	avail, err := kho.Availability(ctx, *subject, *procedure)
	if err != nil {
		return err
	}
	var missing []string
	for _, a := range avail.DocumentTypes {
		fmt.Printf("%-6s %s\n", a.Type, a.Status)
		if a.Status == "not_admitted" {
			missing = append(missing, a.Type)
		}
	}
	if len(missing) > 0 {
		req, err := kho.RequestConsent(ctx, client.ConsentTerms{SubjectID: *subject, Procedure: *procedure,
			Purpose: "Giải quyết thủ tục " + *procedure + " / handling procedure " + *procedure, DocumentTypes: missing,
			ValidUntil: time.Now().Add(7 * 24 * time.Hour), Mode: "once", DataLifeDays: 30}, "consent-"+*subject+"-"+*procedure+"-"+time.Now().Format("20060102"))
		if err != nil {
			return err
		}
		fmt.Printf("asked for consent (request %s); waiting for the subject's answer in the portal\n", req.ID)
		if err := awaitAnswer(ctx, kho, req.ID, *wait); err != nil {
			return err
		}
		if avail, err = kho.Availability(ctx, *subject, *procedure); err != nil {
			return err
		}
	}
	for _, a := range avail.DocumentTypes {
		if a.Status != "available" || len(a.Documents) == 0 {
			continue
		}
		d := a.Documents[0] // the newest
		path := filepath.Join(*out, d.ID)
		got, err := kho.FetchFile(ctx, d.ID, *procedure, path)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %s, %d bytes, signed by %s", path, got.Manifest.Type, got.Manifest.Size, got.Manifest.Issuer)
		if r := got.UseReceipt; r != nil {
			fmt.Printf("; use receipt %s, delete by %s", r.ID, r.DeleteBy)
			if err := os.WriteFile(path+".use-receipt.jws", []byte(r.JWS), 0o600); err != nil {
				return err
			}
		}
		fmt.Println()
	}
	return nil
}

// awaitAnswer polls the agency's consent requests until the subject
// answers.
func awaitAnswer(ctx context.Context, kho *client.Client, id string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		reqs, err := kho.ConsentRequests(ctx)
		if err != nil {
			return err
		}
		for _, r := range reqs {
			if r.ID == id && r.Status != "pending" {
				if r.Status != "approved" {
					return fmt.Errorf("the subject answered %s", r.Status)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer to consent request %s: %w", id, ctx.Err())
		case <-time.After(3 * time.Second):
		}
	}
}

func makeKeys(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sig, enc, public, err := client.GenerateKeys(filepath.Base(dir) + "-" + time.Now().Format("2006-01"))
	if err != nil {
		return err
	}
	for name, v := range map[string]any{"sig.jwk.json": sig, "enc.jwk.json": enc, "public.jwks.json": public} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("%v (keys are never overwritten)", err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Printf("keys in %s; have kho's operator register %s\n", dir, filepath.Join(dir, "public.jwks.json"))
	return nil
}

func readKey(path string) (jwk.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return jwk.ParseKey(b)
}
