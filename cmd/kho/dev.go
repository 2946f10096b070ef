package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"kho"
	"kho/client"
	"kho/internal/devidp"
	"kho/internal/devstack"
	"kho/oauth"
	"kho/postgres"
)

func openStack(out io.Writer) (*devstack.Stack, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	return devstack.New(wd, os.Getenv, out)
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef(`dev needs a command: up, down, status, env, token or khod (kho -h)`)
	}
	if args[0] == "front" {
		return devFront(ctx, args[1:], stdout)
	}
	s, err := openStack(stderr)
	if err != nil {
		return err
	}
	switch args[0] {
	case "up":
		fs := flag.NewFlagSet("dev up", flag.ContinueOnError)
		fs.BoolVar(&s.Cluster, "cluster", false, "the cluster profile: MinIO 4 nodes × 2 drives, Vault 3 Raft nodes, a PostgreSQL replica, fronts; kho dev khod then runs 3 khod (use a state folder of its own: KHO_STATE_DIR)")
		if err := parseFlags(fs, args[1:], stdout); err != nil {
			return err
		}
		st, err := s.Up(ctx)
		if err != nil {
			return err
		}
		if _, err := devidp.LoadOrCreate(st.DevIdPKey); err != nil {
			return err
		}
		return nil
	case "down":
		if err := parseFlags(flag.NewFlagSet("dev down", flag.ContinueOnError), args[1:], stdout); err != nil {
			return err
		}
		return s.Down()
	case "status":
		if err := parseFlags(flag.NewFlagSet("dev status", flag.ContinueOnError), args[1:], stdout); err != nil {
			return err
		}
		return devStatus(ctx, s, stdout)
	case "env":
		if err := parseFlags(flag.NewFlagSet("dev env", flag.ContinueOnError), args[1:], stdout); err != nil {
			return err
		}
		st, err := s.LoadState()
		if err != nil {
			return err
		}
		for _, kv := range st.KhodEnv() {
			fmt.Fprintf(stdout, "export %s=%s\n", kv[0], devstack.ShellQuote(kv[1]))
		}
		return nil
	case "token":
		return devToken(ctx, s, args[1:], stdout)
	case "khod":
		return devKhod(ctx, s, args[1:], stdout, stderr)
	default:
		return usagef("unknown dev command %q: use up, down, status, env, token or khod", args[0])
	}
}

func devStatus(ctx context.Context, s *devstack.Stack, stdout io.Writer) error {
	list, err := s.Status(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tADDRESS\tPID\tHEALTH\tDETAIL")
	bad := 0
	for _, ss := range list {
		pid, health := "-", "ok"
		if ss.PID != 0 {
			pid = fmt.Sprint(ss.PID)
		}
		if !ss.Healthy {
			health, bad = "DOWN", bad+1
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", ss.Name, ss.Address, pid, health, ss.Detail)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("%d service(s) down: kho dev up starts them", bad)
	}
	return nil
}

func devToken(ctx context.Context, s *devstack.Stack, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev token", flag.ContinueOnError)
	as := fs.String("as", "", "who the token is for: citizen:<12-digit id>, business:<enterprise code>:<representative's id>, agency:<code>, officer:<agency code>:<staff id>, security:<staff id> or operator:<staff id>")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid (at most 12h)")
	aud := fs.String("audience", "kho", "aud claim")
	khodURL := fs.String("khod", "", "khod's URL, whose /oauth/token gives agencies' tokens (default: the dev khod's)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *as == "" {
		return usagef("dev token: --as is required, e.g. --as citizen:001090000001")
	}
	if *ttl <= 0 || *ttl > 12*time.Hour {
		return errors.New("dev token: --ttl must be between 1s and 12h")
	}
	p, err := devidp.ParseAs(*as)
	if err != nil {
		return fmt.Errorf("dev token: %v", err)
	}
	st, err := s.LoadState()
	if err != nil {
		return err
	}
	if p.Kind == kho.PrincipalAgency {
		// An agency's system gets its token as in production: a client
		// assertion signed with its own key, at khod's token endpoint.
		return devAgencyToken(ctx, s, st, p.Agency, *khodURL, stdout)
	}
	idp, err := devidp.Load(st.DevIdPKey)
	if err != nil {
		return err
	}
	tok, err := idp.Mint(p, *aud, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// devAgencyToken registers the dev key of the agency's system (made on
// first use, kept in the state folder) and trades a client assertion for
// an access token at khod's token endpoint.
func devAgencyToken(ctx context.Context, s *devstack.Stack, st *devstack.State, agency kho.AgencyCode, khodURL string, stdout io.Writer) error {
	if khodURL == "" {
		khodURL = "http://" + st.KhodListen
	}
	khodURL = strings.TrimSuffix(khodURL, "/")
	// Nothing to do without khod: say so first.
	hctx, hcancel := context.WithTimeout(ctx, 3*time.Second)
	defer hcancel()
	if req, err := http.NewRequestWithContext(hctx, http.MethodGet, khodURL+"/healthz", nil); err != nil {
		return fmt.Errorf("dev token: --khod: %v", err)
	} else if resp, err := http.DefaultClient.Do(req); err != nil {
		return fmt.Errorf("dev token: khod's token endpoint at %s is not reachable (start it with kho dev khod): %v", khodURL, err)
	} else {
		resp.Body.Close()
	}
	key, err := devidp.AgencyKey(s.StateDir, string(agency))
	if err != nil {
		return fmt.Errorf("dev token: the agency's key: %v", err)
	}
	pub, err := key.PublicKey()
	if err != nil {
		return err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	db, err := postgres.Open(cctx, st.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := oauth.Register(ctx, db, agency, set); err != nil && kho.ErrorCode(err) != kho.ECONFLICT {
		return fmt.Errorf("dev token: register the agency's key (has kho migrate run?): %s", kho.ErrorMessage(err))
	}
	ts := &client.TokenSource{Agency: string(agency), TokenURL: khodURL + "/oauth/token", Key: key}
	tok, err := ts.Token(ctx)
	if err != nil {
		var te *client.TokenError
		if errors.As(err, &te) {
			return fmt.Errorf("dev token: %v", te)
		}
		return fmt.Errorf("dev token: khod's token endpoint at %s is not reachable (start it with kho dev khod): %v", khodURL, err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// devKhod runs khod in the foreground with the dev stack's environment, and
// once it is ready prints where it is and a first request to try.
func devKhod(ctx context.Context, s *devstack.Stack, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev khod", flag.ContinueOnError)
	bin := fs.String("bin", "", "khod binary (default: khod next to this kho binary)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *bin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*bin = filepath.Join(filepath.Dir(self), "khod")
	}
	st, err := s.LoadState()
	if err != nil {
		return err
	}
	if st.Cluster != nil {
		return devKhodCluster(ctx, s, st, *bin, stdout)
	}
	// The banner below must describe this khod, not another one already
	// answering on the port.
	if c, err := net.DialTimeout("tcp", st.KhodListen, 300*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("%s is already in use (another khod?): stop it, or set KHO_DEV_KHOD_PORT before kho dev up", st.KhodListen)
	}
	cmd := exec.Command(*bin)
	cmd.Env = os.Environ()
	for _, kv := range st.KhodEnv() {
		cmd.Env = append(cmd.Env, kv[0]+"="+kv[1])
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start khod: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	base := "http://" + st.KhodListen
	ready := make(chan struct{})
	go func() {
		for i := 0; i < 150; i++ {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					close(ready)
					return
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	self, _ := os.Executable()
	for {
		select {
		case <-ready:
			fmt.Fprintf(stdout, "\n  kho is running at %s   (Ctrl-C stops khod; \"make down\" stops the stack)\n", base)
			printTryIt(stdout, base, relOrAbs(self))
			ready = nil
		case err := <-exited:
			if err != nil {
				// khod said what went wrong on its own stderr.
				return errReported
			}
			return nil
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			ctx = context.Background()
		}
	}
}

// devKhodCluster starts the cluster's khod replicas and their front,
// detached (kho dev down stops them), and says where they are.
func devKhodCluster(ctx context.Context, s *devstack.Stack, st *devstack.State, bin string, stdout io.Writer) error {
	for i := range st.Cluster.KhodNodes {
		if _, err := s.StartKhodNode(st, i, bin); err != nil {
			return fmt.Errorf("khod %d: %v", i+1, err)
		}
	}
	for i := range st.Cluster.KhodNodes {
		if err := s.WaitKhodNode(ctx, st, i); err != nil {
			return err
		}
	}
	if err := s.StartKhodFront(st); err != nil {
		return err
	}
	base := "http://" + st.KhodListen
	self, _ := os.Executable()
	fmt.Fprintf(stdout, "\n  kho is running at %s: a front over %d khod (%s),\n  logs in %s; \"kho dev down\" stops them with the stack.\n",
		base, len(st.Cluster.KhodNodes), strings.Join(st.Cluster.KhodNodes, ", "), filepath.Join(s.StateDir, "logs"))
	printTryIt(stdout, base, relOrAbs(self))
	return nil
}

// devFront runs a cluster front in the foreground (kho dev up starts them
// detached): round-robin TCP over the nodes that answer.
func devFront(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev front", flag.ContinueOnError)
	listen := fs.String("listen", "", "`address` to accept on")
	health := fs.String("health", "", "HTTP `path` whose 200 marks a node usable (empty: a node that accepts a connection is)")
	var backends multiFlag
	fs.Var(&backends, "backend", "a node's host:port (repeat)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *listen == "" || len(backends) == 0 {
		return usagef("dev front: --listen and at least one --backend are required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	return (&devstack.Front{Backends: backends, HealthPath: *health}).Serve(ctx, ln)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// printTryIt prints the first requests to try against khod at base.
func printTryIt(stdout io.Writer, base, self string) {
	fmt.Fprintf(stdout, `
  Readiness of PostgreSQL, MinIO and Vault:
    curl -s %[1]s/readyz

  Prometheus metrics (apart from the API; deploy/prometheus and deploy/grafana to chart them):
    curl -s http://127.0.0.1:9480/metrics

  Who am I? As the demo citizen 001090000001:
    curl -s -H "Authorization: Bearer $(%[2]s dev token --as citizen:001090000001)" %[1]s/v1/me

  Deposit a document for that citizen, as the demo justice office:
    curl -s -H "Authorization: Bearer $(%[2]s dev token --as agency:000.06.16.G09)" \
      -F 'metadata={"subject_id":"001090000001","type":"GKS","name":"Giấy khai sinh","issued_on":"2024-01-15","media_type":"text/plain"}' \
      -F 'file=@README.md;type=text/plain' %[1]s/v1/documents

  The citizen's store:
    curl -s -H "Authorization: Bearer $(%[2]s dev token --as citizen:001090000001)" %[1]s/v1/me/documents

  Other demo users: business:0101234567:001090000001, agency:000.00.15.H29,
  security:so01, operator:op01 (see README.md).

`, base, self)
}

func relOrAbs(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return "./" + r
	}
	return p
}
