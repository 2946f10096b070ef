package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"kho"
	"kho/audit"
	"kho/consent"
	"kho/policies"
	"kho/storage"
	"kho/vault"
)

// operator is the principal the CLI's own actions are recorded under.
func operator() kho.Principal {
	name := os.Getenv("USER")
	if kho.StaffID(name).Validate() != nil {
		name = "cli"
	}
	return kho.Principal{Kind: kho.PrincipalOperator, Staff: kho.StaffID(name), TokenID: "kho-cli"}
}

// serviceFlags are the connections an operator command needs: the database
// (see databaseFlags), Vault with the operator's token (VAULT_ADDR and
// VAULT_TOKEN, else the dev stack's), and MinIO (KHO_MINIO_*, else the dev
// stack's khod user).
type serviceFlags struct {
	db databaseFlags
}

func (f *serviceFlags) register(fs *flag.FlagSet) { f.db.register(fs) }

func (f *serviceFlags) open(ctx context.Context) (*storage.Service, func(), error) {
	addr, token := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN")
	minioCfg := storage.MinIOConfig{
		Endpoint: os.Getenv("KHO_MINIO_ENDPOINT"), AccessKey: os.Getenv("KHO_MINIO_ACCESS_KEY"),
		SecretKey: os.Getenv("KHO_MINIO_SECRET_KEY"), Bucket: os.Getenv("KHO_MINIO_BUCKET"),
	}
	if addr == "" || token == "" || minioCfg.Endpoint == "" {
		s, err := openStack(io.Discard)
		if err != nil {
			return nil, nil, errors.New("give VAULT_ADDR, VAULT_TOKEN and KHO_MINIO_* (or run inside a checkout with the dev stack up)")
		}
		st, err := s.LoadState()
		if err != nil {
			return nil, nil, err
		}
		if addr == "" || token == "" {
			addr, token = st.VaultAddr, st.VaultRootToken
		}
		if minioCfg.Endpoint == "" {
			minioCfg = storage.MinIOConfig{Endpoint: st.MinIOEndpoint, AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: st.MinIOBucket}
		}
	}
	if minioCfg.Bucket == "" {
		minioCfg.Bucket = "kho-documents"
	}
	db, err := f.db.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	if st, err := db.Status(ctx); err != nil || !st.UpToDate() {
		db.Close()
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("the database is at migration %d of %d: run kho migrate first", st.Current, st.Latest)
	}
	api, err := vault.NewAPIClient(addr, token, 30*time.Second)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	transit, err := vault.NewTransitWith(api)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	blobs, err := storage.NewMinIO(minioCfg)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	svc, err := storage.New(storage.Config{DB: db, Blobs: blobs, Keys: transit, Signer: transit})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return svc, db.Close, nil
}

func runKeys(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef(`keys needs a command: rotate or rewrap`)
	}
	var sf serviceFlags
	switch args[0] {
	case "rotate":
		fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
		sf.register(fs)
		subject := fs.String("subject", "", "personal identification number or enterprise code whose key to rotate [required]")
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		id, err := kho.ParseSubjectID(*subject)
		if err != nil {
			return fmt.Errorf("keys rotate: --subject: %s", kho.ErrorMessage(err))
		}
		svc, done, err := sf.open(ctx)
		if err != nil {
			return err
		}
		defer done()
		h, err := svc.SubjectHandle(ctx, id)
		if err != nil {
			return err
		}
		if err := svc.RotateKey(ctx, operator(), h); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rotated the key of store %s; run kho keys rewrap to move its file keys to the new version\n", h)
		return nil
	case "rewrap":
		fs := flag.NewFlagSet("keys rewrap", flag.ContinueOnError)
		sf.register(fs)
		batch := fs.Int("batch", 100, "file keys per Vault call (1 to 1000)")
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		svc, done, err := sf.open(ctx)
		if err != nil {
			return err
		}
		defer done()
		start := time.Now()
		last := time.Time{}
		pr, err := svc.RewrapAll(ctx, operator(), *batch, func(p storage.RewrapProgress) {
			if time.Since(last) > time.Second || p.SubjectsDone == p.Subjects {
				fmt.Fprintf(stdout, "rewrap: %d of %d stores checked, %d file keys rewrapped, %s\n", p.SubjectsDone, p.Subjects, p.Keys, time.Since(start).Round(time.Second))
				last = time.Now()
			}
		})
		if err != nil {
			return fmt.Errorf("rewrap stopped after %d file keys (run it again to continue): %w", pr.Keys, err)
		}
		fmt.Fprintf(stdout, "done: %d file keys rewrapped in %d stores; older key versions retired\n", pr.Keys, pr.Subjects)
		return nil
	default:
		return fmt.Errorf("unknown keys command %q: use rotate or rewrap", args[0])
	}
}

func runReconcile(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	var sf serviceFlags
	sf.register(fs)
	grace := fs.Duration("grace", time.Hour, "leave objects younger than this alone (they may belong to uploads under way)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	svc, done, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	n, err := svc.Reconcile(ctx, *grace)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %d object(s) no document refers to\n", n)
	return nil
}

func runCatalogue(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "load" {
		return usagef(`catalogue needs a command: load [FILE]`)
	}
	fs := flag.NewFlagSet("catalogue load", flag.ContinueOnError)
	var dbf databaseFlags
	dbf.register(fs)
	pos, err := parseArgs(fs, args[1:], stdout, 1)
	if err != nil {
		return err
	}
	var file string
	if len(pos) == 1 {
		file = pos[0]
	}
	var cat *policies.Catalogue
	if file == "" {
		cat, err = policies.DefaultCatalogue()
	} else {
		var b []byte
		if b, err = os.ReadFile(file); err == nil {
			cat, err = policies.ParseCatalogue(b)
		}
	}
	if err != nil {
		return fmt.Errorf("catalogue load: %v", err)
	}
	db, err := dbf.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := consent.LoadCatalogue(ctx, db, cat); err != nil {
		return err
	}
	if err := audit.RecordNow(ctx, db, audit.Event{Action: "operator.catalogue_loaded", Outcome: audit.Success, Actor: operator(),
		Details: map[string]any{"version": cat.Version, "sha256": cat.SHA256}}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "catalogue %s loaded: %d document types, %d procedures\n", cat.Version, len(cat.DocumentTypes), len(cat.Procedures))
	return nil
}

// runPolicy explains a reuse decision from the embedded policy and catalogue:
// kho policy explain --agency CODE --kind KIND --procedure P --type T [--consent] [--action fetch|list]
func runPolicy(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "explain" {
		return usagef(`policy needs a command: explain`)
	}
	fs := flag.NewFlagSet("policy explain", flag.ContinueOnError)
	agency := fs.String("agency", "", "requesting agency's code [required]")
	kind := fs.String("kind", "", "the agency's kind in the catalogue (police, justice, ...) [required]")
	proc := fs.String("procedure", "", "procedure the agency handles [required]")
	typ := fs.String("type", "", "document type asked for [required]")
	action := fs.String("action", policies.ActionFetch, "fetch or list")
	withConsent := fs.Bool("consent", false, "an active consent covers this agency, procedure and type")
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	if *agency == "" || *kind == "" || *proc == "" || *typ == "" {
		return usagef("policy explain: --agency, --kind, --procedure and --type are required")
	}
	if *action != policies.ActionFetch && *action != policies.ActionList {
		return usagef("policy explain: --action must be fetch or list")
	}
	cat, err := policies.DefaultCatalogue()
	if err != nil {
		return err
	}
	p, ok := cat.Procedure(*proc)
	if !ok {
		return fmt.Errorf("policy explain: procedure %s is not in the catalogue", *proc)
	}
	engine, err := policies.DefaultEngine()
	if err != nil {
		return err
	}
	q := policies.ReuseQuery{Agency: *agency, AgencyKind: *kind, Action: *action, Procedure: p, DocumentType: *typ, Consent: *withConsent}
	fmt.Fprint(stdout, engine.Decide(q).Explain(q))
	return nil
}
