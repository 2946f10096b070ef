package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kho/audit"
	"kho/internal/demo"
	"kho/internal/devstack"
	"kho/postgres"
	"kho/storage/minioadmin"
	"kho/vault"
)

// databaseFlags are shared by the commands that reach PostgreSQL. The URL
// comes from --database-url, else KHO_DATABASE_URL, else the dev stack.
type databaseFlags struct {
	url, schema string
}

func (d *databaseFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.url, "database-url", "", "PostgreSQL URL (default: $KHO_DATABASE_URL, else the dev stack's)")
	fs.StringVar(&d.schema, "database-schema", "public", "schema holding kho's tables")
}

// parseAndOpen parses a database command's flags and opens the database.
func (d *databaseFlags) parseAndOpen(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) (*postgres.DB, error) {
	if err := parseFlags(fs, args, stdout); err != nil {
		return nil, err
	}
	return d.open(ctx)
}

func (d *databaseFlags) open(ctx context.Context) (*postgres.DB, error) {
	url := d.url
	if url == "" {
		url = os.Getenv("KHO_DATABASE_URL")
	}
	if url == "" {
		s, err := openStack(io.Discard)
		if err != nil {
			return nil, errors.New("no database: give --database-url or KHO_DATABASE_URL, or run inside a checkout with the dev stack up")
		}
		st, err := s.LoadState()
		if err != nil {
			return nil, err
		}
		url = st.DatabaseURL
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return postgres.Open(cctx, url, postgres.WithSchema(d.schema))
}

func runMigrate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var dbf databaseFlags
	dbf.register(fs)
	statusOnly := fs.Bool("status", false, "only show the applied and latest versions")
	db, err := dbf.parseAndOpen(ctx, fs, args, stdout)
	if err != nil {
		return err
	}
	defer db.Close()
	if !*statusOnly {
		applied, err := db.Migrate(ctx)
		for _, m := range applied {
			fmt.Fprintf(stdout, "applied %04d_%s\n", m.Version, m.Name)
		}
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			versions := make([]int, len(applied))
			for i, m := range applied {
				versions[i] = m.Version
			}
			if err := audit.RecordNow(ctx, db, audit.Event{Action: audit.OperatorMigrated, Outcome: audit.Success, Actor: operator(),
				Details: map[string]any{"versions": versions}}); err != nil {
				return err
			}
		}
	}
	st, err := db.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database schema %s at migration %d of %d\n", db.Schema(), st.Current, st.Latest)
	if !st.UpToDate() {
		return fmt.Errorf("%d migration(s) pending", st.Latest-st.Current)
	}
	return nil
}

func runSeed(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo seed", flag.ContinueOnError)
	var dbf databaseFlags
	dbf.register(fs)
	db, err := dbf.parseAndOpen(ctx, fs, args, stdout)
	if err != nil {
		return err
	}
	defer db.Close()
	if st, err := db.Status(ctx); err != nil {
		return err
	} else if !st.UpToDate() {
		return errors.New("the database is not migrated: run kho migrate first")
	}
	d, err := demo.Seed(ctx, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo data ready: %d citizens, %d business, %d agencies; catalogue %s with %d document types and %d procedures\n",
		len(d.Citizens), len(d.Businesses), len(d.Agencies), d.Catalogue.Version, len(d.Catalogue.DocumentTypes), len(d.Catalogue.Procedures))
	return nil
}

// runInit prepares a real deployment's Vault and MinIO for khod, with the
// operator's credentials taken from the environment (never from flags, which
// other users can read in the process list). It writes khod's credentials to
// files in --out, mode 0600.
// cidrList is the repeatable --khod-cidr option.
type cidrList []string

func (l *cidrList) String() string { return strings.Join(*l, ",") }

func (l *cidrList) Set(v string) error {
	if _, _, err := net.ParseCIDR(v); err != nil {
		return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/24", v)
	}
	*l = append(*l, v)
	return nil
}

func runInit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	vaultAddr := fs.String("vault-addr", os.Getenv("VAULT_ADDR"), "Vault URL (operator token in VAULT_TOKEN)")
	minioEndpoint := fs.String("minio-endpoint", "", "MinIO host:port or URL (root credentials in MINIO_ROOT_USER and MINIO_ROOT_PASSWORD)")
	bucket := fs.String("minio-bucket", "kho-documents", "bucket for document ciphertext")
	user := fs.String("minio-user", "khod", "MinIO user to create for khod, limited to the bucket")
	out := fs.String("out", "", "folder to write khod's credentials to [required]")
	org := fs.String("organization", "kho", "organization named in the root and intermediate CA certificates")
	rootPEM := fs.String("import-root", "", "PEM file of an existing root CA certificate (with --import-intermediate and --import-intermediate-key)")
	intPEM := fs.String("import-intermediate", "", "PEM file of an existing agency-signing intermediate certificate")
	intKey := fs.String("import-intermediate-key", "", "PEM file of that intermediate's private key")
	publicURL := fs.String("public-url", "", "khod's public base `URL` (https://...): issued certificates point validators to its /pki/ for the CA certificates and revocation lists [required]")
	var cidrs cidrList
	fs.Var(&cidrs, "khod-cidr", "`CIDR` khod logs in to Vault from (repeatable): its AppRole secret_id and tokens work from there only [required]")
	secretTTL := fs.Duration("secret-id-ttl", 90*24*time.Hour, "how long khod's AppRole secret_id stays valid; issue a new one with kho init before it ends")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	token := os.Getenv("VAULT_TOKEN")
	rootUser, rootPass := os.Getenv("MINIO_ROOT_USER"), os.Getenv("MINIO_ROOT_PASSWORD")
	switch {
	case *out == "":
		return usagef("init: --out is required")
	case *vaultAddr == "" || token == "":
		return errors.New("init: give --vault-addr (or VAULT_ADDR) and the operator's VAULT_TOKEN")
	case *minioEndpoint == "" || rootUser == "" || rootPass == "":
		return errors.New("init: give --minio-endpoint and MINIO_ROOT_USER/MINIO_ROOT_PASSWORD")
	case *publicURL == "":
		return errors.New("init: give --public-url, the https address validators reach khod at (certificates name its /pki/)")
	case len(cidrs) == 0:
		return errors.New("init: give --khod-cidr with the address range khod runs in (127.0.0.1/32 on one machine)")
	case *secretTTL < time.Hour:
		return errors.New("init: --secret-id-ttl must be at least 1h")
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	api, err := vault.NewAPIClient(*vaultAddr, token, 10*time.Second)
	if err != nil {
		return err
	}
	creds, err := devstack.BootstrapVault(ctx, api, cidrs, *secretTTL)
	if err != nil {
		return err
	}
	pki := vault.PKIOptions{Organization: *org, PublicURL: *publicURL}
	for _, f := range []struct {
		path string
		into *string
	}{{*rootPEM, &pki.RootPEM}, {*intPEM, &pki.IntermediatePEM}, {*intKey, &pki.IntermediateKeyPEM}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return fmt.Errorf("init: %v", err)
		}
		*f.into = string(b)
	}
	if err := vault.BootstrapPKI(ctx, api, pki); err != nil {
		return err
	}
	root, err := minioadmin.New(*minioEndpoint, rootUser, rootPass)
	if err != nil {
		return err
	}
	if err := root.EnsureBucket(ctx, *bucket); err != nil {
		return err
	}
	secretKey := randomHex(24)
	if err := root.EnsureUser(ctx, *user, secretKey, *bucket); err != nil {
		return err
	}
	files := map[string]string{
		"vault-role-id":    creds.RoleID,
		"vault-secret-id":  creds.SecretID,
		"minio-access-key": *user,
		"minio-secret-key": secretKey,
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(*out, name), []byte(v+"\n"), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "Vault and MinIO ready for khod; its credentials are in %s.\nStart khod with --vault-role-id \"$(cat %[1]s/vault-role-id)\" --vault-secret-id-file %[1]s/vault-secret-id --minio-access-key %s --minio-secret-key-file %[1]s/minio-secret-key\n", *out, *user)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
