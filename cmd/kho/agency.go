package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/audit"
	"kho/oauth"
	"kho/outbox"
)

// runAgency manages agencies' systems as OAuth clients: the public keys
// their client assertions are signed with and deliveries are encrypted to.
func runAgency(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("agency needs a command: register, retire-key")
	}
	fs := flag.NewFlagSet("agency "+args[0], flag.ContinueOnError)
	var dbf databaseFlags
	dbf.register(fs)
	code := fs.String("code", "", "the agency's code [required]")
	switch args[0] {
	case "register":
		file := fs.String("jwks", "", `JWKS file of the agency system's public keys: "use": "sig" keys sign client assertions, "use": "enc" keys receive deliveries [required]`)
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		if *code == "" || *file == "" {
			return usagef("agency register: --code and --jwks are required")
		}
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("agency register: %v", err)
		}
		set, err := jwk.Parse(b)
		if err != nil {
			return fmt.Errorf("agency register: %s is not a JWKS: %v", *file, err)
		}
		db, err := dbf.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		kids, err := oauth.Register(ctx, db, kho.AgencyCode(*code), set)
		if err != nil {
			return fmt.Errorf("agency register: %s", kho.ErrorMessage(err))
		}
		if err := audit.RecordNow(ctx, db, audit.Event{Action: "operator.agency_keys_registered", Outcome: audit.Success, Actor: operator(),
			Details: map[string]any{"agency": *code, "kids": kids}}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "agency %s: registered %d key(s): %v\n", *code, len(kids), kids)
		return nil
	case "retire-key":
		kid := fs.String("kid", "", "the key to stop accepting [required]")
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		if *code == "" || *kid == "" {
			return usagef("agency retire-key: --code and --kid are required")
		}
		db, err := dbf.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := oauth.Retire(ctx, db, kho.AgencyCode(*code), *kid); err != nil {
			return fmt.Errorf("agency retire-key: %s", kho.ErrorMessage(err))
		}
		if err := audit.RecordNow(ctx, db, audit.Event{Action: "operator.agency_key_retired", Outcome: audit.Success, Actor: operator(),
			Details: map[string]any{"agency": *code, "kid": *kid}}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "agency %s: key %s retired; assertions it signs are refused from now on\n", *code, *kid)
		return nil
	case "webhook":
		u := fs.String("url", "", "https `URL` kho POSTs the agency's signed events to")
		remove := fs.Bool("remove", false, "stop sending the agency events (queued ones wait for a new webhook)")
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		if *code == "" || (*u == "") == !*remove {
			return usagef("agency webhook: --code, and either --url or --remove, are required")
		}
		db, err := dbf.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		if *remove {
			if err := outbox.RemoveWebhook(ctx, db, kho.AgencyCode(*code)); err != nil {
				return fmt.Errorf("agency webhook: %s", kho.ErrorMessage(err))
			}
			fmt.Fprintf(stdout, "agency %s: no webhook; events wait until one is registered\n", *code)
			return nil
		}
		// Plain http only to this machine, for the dev stack: judged on
		// the parsed host, not the text.
		local := false
		if pu, err := url.Parse(*u); err == nil && pu.User == nil {
			h := pu.Hostname()
			local = h == "localhost" || h == "127.0.0.1" || h == "::1"
		}
		if err := outbox.SetWebhook(ctx, db, kho.AgencyCode(*code), *u, local); err != nil {
			return fmt.Errorf("agency webhook: %s", kho.ErrorMessage(err))
		}
		fmt.Fprintf(stdout, "agency %s: events go to %s\n", *code, *u)
		return nil
	}
	return usagef("unknown agency command %q: use register, retire-key or webhook", args[0])
}

// runOutbox shows and replays webhook deliveries.
func runOutbox(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("outbox needs a command: list, replay")
	}
	fs := flag.NewFlagSet("outbox "+args[0], flag.ContinueOnError)
	var dbf databaseFlags
	dbf.register(fs)
	switch args[0] {
	case "list":
		state := fs.String("state", "", "only deliveries in this `state`: pending, delivered or dead")
		limit := fs.Int("limit", 50, "at most this many, newest first")
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		db, err := dbf.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		list, err := outbox.List(ctx, db, *state, *limit)
		if err != nil {
			return fmt.Errorf("outbox list: %s", kho.ErrorMessage(err))
		}
		for _, d := range list {
			fmt.Fprintf(stdout, "%d\t%s\t%s\t%s\t%s\tattempts %d\t%s\n", d.ID, d.State, d.Agency, d.Topic, d.EventID, d.Attempts, d.LastError)
		}
		return nil
	case "replay":
		id := fs.Int64("id", 0, "the dead delivery to try again [required]")
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		if *id == 0 {
			return usagef("outbox replay: --id is required")
		}
		db, err := dbf.open(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := outbox.Replay(ctx, db, *id); err != nil {
			return fmt.Errorf("outbox replay: %s", kho.ErrorMessage(err))
		}
		fmt.Fprintf(stdout, "delivery %d is due again\n", *id)
		return nil
	}
	return usagef("unknown outbox command %q: use list or replay", args[0])
}
