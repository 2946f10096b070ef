package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// kindsOfReceipt are the JWS types kho signs with the receipts' keys.
var kindsOfReceipt = map[string]string{
	"kho-consent-receipt+jws":    "consent receipt",
	"kho-consent-receipt-qr+jws": "printed receipt's QR summary",
	"kho-use-receipt+jws":        "use receipt",
	"kho-event+jws":              "event",
}

// runReceipt verifies, offline, a receipt or event kho signed: against the
// JWKS published at /.well-known/jwks.json, saved to a file.
func runReceipt(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return usagef(`receipt needs a command: verify FILE --jwks JWKS`)
	}
	fs := flag.NewFlagSet("receipt verify", flag.ContinueOnError)
	keys := fs.String("jwks", "", "`file` holding kho's JWKS (/.well-known/jwks.json) [required]")
	pos, err := parseArgs(fs, args[1:], stdout, 1)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *keys == "" {
		return usagef("receipt verify: give the receipt's file and --jwks")
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("receipt verify: %v", err)
	}
	kb, err := os.ReadFile(*keys)
	if err != nil {
		return fmt.Errorf("receipt verify: %v", err)
	}
	set, err := jwk.Parse(kb)
	if err != nil {
		return fmt.Errorf("receipt verify: %s is not a JWKS: %v", *keys, err)
	}
	compact := bytes.TrimSpace(b)
	msg, err := jws.Parse(compact)
	if err != nil || len(msg.Signatures()) != 1 {
		return fmt.Errorf("receipt verify: NOT VALID: %s is not a compact JWS", pos[0])
	}
	typ, _ := msg.Signatures()[0].ProtectedHeaders().Type()
	kind, ok := kindsOfReceipt[typ]
	if !ok {
		return fmt.Errorf("receipt verify: NOT VALID: typ %q is not one kho signs", typ)
	}
	payload, err := jws.Verify(compact, jws.WithKeySet(set, jws.WithRequireKid(true)))
	if err != nil {
		return fmt.Errorf("receipt verify: NOT VALID: the signature does not verify with these keys")
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, payload, "", "  "); err != nil {
		return fmt.Errorf("receipt verify: NOT VALID: the payload is not JSON")
	}
	fmt.Fprintf(stdout, "valid %s (%s), signed by %s\n%s\n", kind, typ, strings.TrimSpace(kidOf(msg)), pretty.String())
	return nil
}

func kidOf(m *jws.Message) string {
	kid, _ := m.Signatures()[0].ProtectedHeaders().KeyID()
	return kid
}
