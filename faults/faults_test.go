//go:build faults

// Package faults_test breaks a kho of its own while it works: khod killed
// in the middle of a deposit, MinIO frozen and killed, Vault sealed, frozen,
// killed and khod's token revoked, PostgreSQL frozen, restarted and its
// postmaster killed, deposits retried across khod's restarts. After each fault it checks what
// must hold whatever fails: every acknowledged deposit reads back
// byte-exact, no document row lacks its object, no object or upload is left
// without its row once reconciled, no retry made a second document, no
// integrity failure was raised for an intact document, and the audit trail
// verifies. It prints how long each fault took to be seen (the first 503
// naming the dependency) and to be over (the first success after the
// repair).
//
// It runs its own PostgreSQL, MinIO, Vault and khod (kho dev up's code, in
// a folder and on ports of its own), never the dev stack the other tests
// share, and stops them at the end: `make test-faults`.
package faults_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"kho"
	"kho/internal/demo"
	"kho/internal/devidp"
	"kho/internal/devstack"
	"kho/internal/freeport"
	"kho/postgres"
	"kho/storage/minioadmin"
	"kho/vault"
)

const (
	issuer  = "000.06.16.G09"
	subject = "001090000001" // the demo citizen
)

// rig is the private stack and khod, and what the suite knows was stored.
type rig struct {
	t       *testing.T
	ctx     context.Context
	stack   *devstack.Stack
	st      *devstack.State
	repo    string
	env     map[string]string
	khod    *exec.Cmd
	khodLog *os.File
	url     string
	http    *http.Client
	tokens  map[string]string
	db      *postgres.DB
	s3      *minio.Client

	mu    sync.Mutex
	acked map[string]ack // document id → what was deposited
	times []timing
}

type ack struct {
	sum  string
	size int64
}

type timing struct {
	fault             string
	detect, recovered time.Duration
}

func newRig(t *testing.T) *rig { return newRigOf(t, false) }

// newRigOf starts a stack of the suite's own: one node of each server, or
// the cluster profile (kho dev up --cluster) with 3 khod behind a front.
func newRigOf(t *testing.T, cluster bool) *rig {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	t.Cleanup(cancel)
	wd, _ := os.Getwd()
	repo, err := devstack.FindRepo(wd)
	if err != nil {
		t.Fatal(err)
	}
	// Under the temporary folder ($TMPDIR, which CI makes one of the job's
	// own), not t.TempDir: PostgreSQL runs as another user, who must
	// reach its data folder.
	dir, err := os.MkdirTemp("", "kho-faults-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("KHO_CACHE_DIR")
	if cache == "" {
		base, _ := os.UserCacheDir()
		cache = filepath.Join(base, "kho")
	}
	env := map[string]string{"KHO_STATE_DIR": dir, "KHO_CACHE_DIR": cache}
	// How many ports each service takes: one on a single node; on a
	// cluster, its front's and its nodes' that follow it.
	ports := map[string]int{"KHO_DEV_POSTGRES_PORT": 1, "KHO_DEV_MINIO_PORT": 1, "KHO_DEV_VAULT_PORT": 1, "KHO_DEV_KHOD_PORT": 1}
	if cluster {
		ports = map[string]int{"KHO_DEV_POSTGRES_PORT": 2, "KHO_DEV_MINIO_PORT": 1 + devstack.ClusterMinIONodes,
			"KHO_DEV_VAULT_PORT": 1 + 2*devstack.ClusterVaultNodes, "KHO_DEV_KHOD_PORT": 11 + devstack.ClusterKhods}
	}
	for k, n := range ports {
		base, err := freeport.Range(n)
		if err != nil {
			t.Fatal(err)
		}
		env[k] = strconv.Itoa(base)
	}
	s, err := devstack.New(repo, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s.Cluster = cluster
	s.KhoBinary = filepath.Join(repo, "bin", "kho")
	r := &rig{t: t, ctx: ctx, stack: s, repo: repo, env: env, acked: map[string]ack{},
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
	t.Cleanup(func() {
		r.stopKhod(syscall.SIGTERM)
		if err := s.Down(); err != nil {
			t.Errorf("stopping the fault stack: %v", err)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("the fault stack's state and logs are kept in %s", dir)
		}
	})
	start := time.Now()
	if r.st, err = s.Up(ctx); err != nil {
		t.Fatalf("fault stack: %v", err)
	}
	if r.db, err = postgres.Open(ctx, r.st.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.db.Close)
	if _, err := r.db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := demo.Seed(ctx, r.db); err != nil {
		t.Fatal(err)
	}
	root, err := minioadmin.New(r.st.MinIOEndpoint, r.st.MinIORootUser, r.st.MinIORootPassword)
	if err != nil {
		t.Fatal(err)
	}
	r.s3 = root.S3()
	idp, err := devidp.LoadOrCreate(r.st.DevIdPKey)
	if err != nil {
		t.Fatal(err)
	}
	r.tokens = map[string]string{}
	for name, as := range map[string]string{"issuer": "agency:" + issuer, "owner": "citizen:" + subject, "officer": "security:so01"} {
		p, err := devidp.ParseAs(as)
		if err != nil {
			t.Fatal(err)
		}
		if r.tokens[name], err = idp.Mint(p, "kho", 2*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	r.url = "http://" + r.st.KhodListen
	if cluster {
		r.startKhods()
	} else {
		r.startKhod()
	}
	t.Logf("fault stack up in %s (%s)", time.Since(start).Round(time.Second), dir)
	return r
}

// startKhod runs khod on the rig's stack and waits until it is ready.
func (r *rig) startKhod() {
	r.t.Helper()
	var err error
	if r.khodLog == nil {
		if r.khodLog, err = os.Create(filepath.Join(r.stack.StateDir, "logs", "khod.log")); err != nil {
			r.t.Fatal(err)
		}
	}
	r.khod = exec.Command(filepath.Join(r.repo, "bin", "khod"), "--rate-limit=100000", "--rate-burst=100000", "--metrics-listen=", "--log-level=warn")
	r.khod.Env = os.Environ()
	for _, kv := range r.st.KhodEnv() {
		r.khod.Env = append(r.khod.Env, kv[0]+"="+kv[1])
	}
	r.khod.Stdout, r.khod.Stderr = r.khodLog, r.khodLog
	if err := r.khod.Start(); err != nil {
		r.t.Fatalf("start khod (make build first): %v", err)
	}
	if _, err := r.until("khod ready", 60*time.Second, func() error { return r.ready() }); err != nil {
		r.t.Fatalf("khod did not become ready: %v (log: %s)", err, r.khodLog.Name())
	}
}

func (r *rig) stopKhod(sig syscall.Signal) {
	if r.khod == nil || r.khod.Process == nil {
		return
	}
	_ = r.khod.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = r.khod.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = r.khod.Process.Kill()
		<-done
	}
	r.khod = nil
}

func (r *rig) ready() error {
	resp, err := http.Get(r.url + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz answered %d", resp.StatusCode)
	}
	return nil
}

// until retries fn until it succeeds or timeout passes, and says how long
// it took.
func (r *rig) until(what string, timeout time.Duration, fn func() error) (time.Duration, error) {
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = fn(); err == nil {
			return time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("%s: not within %s: %v", what, timeout, err)
}

// outcome is what an HTTP call to khod came to.
type outcome struct {
	status     int
	dependency string
	body       []byte
	err        error // transport: the connection failed or was cut
}

func (o outcome) String() string {
	if o.err != nil {
		return "transport error: " + o.err.Error()
	}
	b := bytes.TrimSpace(o.body)
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return fmt.Sprintf("%d %s", o.status, b)
}

// unavailable is a 503 naming dep (any dependency when dep is empty).
func (o outcome) unavailable(dep string) bool {
	return o.err == nil && o.status == http.StatusServiceUnavailable && (dep == "" || o.dependency == dep)
}

func (r *rig) call(ctx context.Context, who, method, path string, body io.Reader, hdr map[string]string) outcome {
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, body)
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+r.tokens[who])
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if n, ok := body.(interface{ Len() int }); ok {
		req.ContentLength = int64(n.Len())
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	o := outcome{status: resp.StatusCode, body: b, err: err}
	if resp.StatusCode == http.StatusServiceUnavailable {
		var p struct {
			Dependency string `json:"dependency"`
		}
		_ = json.Unmarshal(b, &p)
		o.dependency = p.Dependency
	}
	return o
}

// content makes n bytes of text for a deposit.
func content(n int) []byte {
	raw := make([]byte, (n+1)/2)
	_, _ = rand.Read(raw)
	return []byte(hex.EncodeToString(raw))[:n]
}

// depositBody is a deposit's multipart body, the same bytes for the same
// file.
func depositBody(file []byte) (*bytes.Buffer, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	// One boundary for every attempt: a retry under an Idempotency-Key
	// must send the same bytes (the content is hex, which it never
	// contains).
	_ = mw.SetBoundary("kho-fault-suite-boundary")
	_ = mw.WriteField("metadata", `{"subject_id":"`+subject+`","type":"GKS","name":"Giấy khai sinh (fault suite)","issued_on":"2024-01-15","media_type":"text/plain"}`)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="gks.txt"`)
	h.Set("Content-Type", "text/plain")
	w, _ := mw.CreatePart(h)
	_, _ = w.Write(file)
	_ = mw.Close()
	return &b, mw.FormDataContentType()
}

// deposit sends one attempt of a deposit under key; a 201 is acknowledged
// and remembered.
func (r *rig) deposit(ctx context.Context, file []byte, key string) outcome {
	body, ctype := depositBody(file)
	o := r.call(ctx, "issuer", http.MethodPost, "/v1/documents", body, map[string]string{"Content-Type": ctype, "Idempotency-Key": key})
	if o.err == nil && o.status == http.StatusCreated {
		var d struct {
			ID     string `json:"id"`
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		}
		if err := json.Unmarshal(o.body, &d); err != nil || d.ID == "" {
			o.err = fmt.Errorf("a 201 without a document: %s", o.body)
			return o
		}
		sum := sha256.Sum256(file)
		if d.SHA256 != hex.EncodeToString(sum[:]) || d.Size != int64(len(file)) {
			o.err = fmt.Errorf("acknowledged %s with hash %s, size %d; sent %x, %d", d.ID, d.SHA256, d.Size, sum, len(file))
			return o
		}
		r.mu.Lock()
		r.acked[d.ID] = ack{sum: d.SHA256, size: d.Size}
		r.mu.Unlock()
	}
	return o
}

// depositRetrying retries a deposit under one key until it is
// acknowledged, as a client should after a 503 or a lost connection.
func (r *rig) depositRetrying(ctx context.Context, file []byte, key string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		o := r.deposit(ctx, file, key)
		if o.err == nil && o.status == http.StatusCreated {
			return nil
		}
		retryable := o.err != nil || o.status == http.StatusServiceUnavailable || o.status == http.StatusConflict
		if !retryable || time.Now().After(deadline) {
			return fmt.Errorf("deposit %s: %s", key, o)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// aDocument is one acknowledged document to read during a fault.
func (r *rig) aDocument() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.acked {
		return id
	}
	r.t.Fatal("no document acknowledged yet")
	return ""
}

func (r *rig) download(ctx context.Context, id string) outcome {
	return r.call(ctx, "owner", http.MethodGet, "/v1/documents/"+id+"/content", nil, nil)
}

// fault breaks something with breakIt, checks that requests meanwhile are
// 503s naming dep (detected), repairs it with repair and waits until a
// download and a deposit work again (recovered), then checks the
// invariants.
func (r *rig) fault(name, dep string, breakIt, repair func()) {
	r.t.Helper()
	id := r.aDocument()
	breakIt()
	detect, err := r.until(name+": a 503 naming "+dep, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(r.ctx, 20*time.Second)
		defer cancel()
		if o := r.download(ctx, id); !o.unavailable(dep) {
			return fmt.Errorf("download answered %s", o)
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	// A deposit meanwhile is refused as an outage too, never as the
	// client's fault; retried later under the same key, it lands once.
	key := "fault-" + strings.ReplaceAll(name, " ", "-")
	file := content(300 << 10)
	ctx, cancel := context.WithTimeout(r.ctx, 20*time.Second)
	if o := r.deposit(ctx, file, key); !o.unavailable("") && !(o.err == nil && o.status == http.StatusCreated) {
		cancel()
		r.t.Fatalf("%s: deposit during the fault: %s, want 503", name, o)
	}
	cancel()
	repair()
	recovered, err := r.until(name+": service back", 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(r.ctx, 20*time.Second)
		defer cancel()
		if o := r.download(ctx, id); o.err != nil || o.status != http.StatusOK {
			return fmt.Errorf("download answered %s", o)
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.depositRetrying(r.ctx, file, key, 30*time.Second); err != nil {
		r.t.Fatalf("%s: after the repair: %v", name, err)
	}
	r.times = append(r.times, timing{fault: name, detect: detect, recovered: recovered})
	r.check(name)
}

// check asserts the invariants.
func (r *rig) check(after string) {
	r.t.Helper()
	ctx := r.ctx
	// Every acknowledged deposit reads back byte-exact.
	r.mu.Lock()
	acked := make(map[string]ack, len(r.acked))
	for k, v := range r.acked {
		acked[k] = v
	}
	r.mu.Unlock()
	for id, a := range acked {
		o := r.download(ctx, id)
		sum := sha256.Sum256(o.body)
		if o.err != nil || o.status != http.StatusOK || hex.EncodeToString(sum[:]) != a.sum || int64(len(o.body)) != a.size {
			r.t.Fatalf("after %s: acknowledged document %s does not read back: %v %d (%d bytes)", after, id, o.err, o.status, len(o.body))
		}
	}
	// One document per acknowledged deposit: no retry made a second.
	var docs int
	if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM documents`).Scan(&docs); err != nil {
		r.t.Fatal(err)
	}
	if docs != len(acked) {
		r.t.Fatalf("after %s: %d documents stored for %d acknowledged deposits", after, docs, len(acked))
	}
	// No row without its object.
	rows, err := r.db.Pool.Query(ctx, `SELECT object_name FROM documents WHERE object_name IS NOT NULL`)
	if err != nil {
		r.t.Fatal(err)
	}
	names := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			r.t.Fatal(err)
		}
		names[n] = true
	}
	rows.Close()
	for n := range names {
		if _, err := r.s3.StatObject(ctx, r.st.MinIOBucket, n, minio.StatObjectOptions{}); err != nil {
			r.t.Fatalf("after %s: the object of a document row is missing: %s: %v", after, n, err)
		}
	}
	// Once reconciled (kho reconcile, nothing being uploaded now), no
	// object and no upload without its row. A MinIO cluster whose node
	// just came back can stall a removal for seconds while its peers
	// reconnect to it (seen: 19 s); kho reconcile then stops with that
	// outage, and is run again as its operator (or khod's own timer)
	// would, until it completes.
	var failures []string
	if _, err := r.until("kho reconcile", 90*time.Second, func() error {
		cmd := exec.CommandContext(ctx, filepath.Join(r.repo, "bin", "kho"), "reconcile", "--grace", "0s")
		cmd.Dir = r.repo
		cmd.Env = os.Environ()
		for k, v := range r.env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			failures = append(failures, fmt.Sprintf("%v: %s", err, bytes.TrimSpace(out)))
			return err
		}
		return nil
	}); err != nil {
		r.t.Fatalf("after %s: kho reconcile never completed: %v\n%s", after, err, strings.Join(failures, "\n"))
	}
	if len(failures) > 0 {
		r.t.Logf("after %s: kho reconcile completed on try %d; before that:\n%s", after, len(failures)+1, strings.Join(failures, "\n"))
	}
	for o := range r.s3.ListObjects(ctx, r.st.MinIOBucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			r.t.Fatal(o.Err)
		}
		if !names[o.Key] {
			r.t.Fatalf("after %s and kho reconcile: object %s has no document row", after, o.Key)
		}
	}
	for u := range r.s3.ListIncompleteUploads(ctx, r.st.MinIOBucket, "", true) {
		if u.Err != nil {
			r.t.Fatal(u.Err)
		}
		r.t.Fatalf("after %s and kho reconcile: incomplete upload %s left", after, u.Key)
	}
	var pending int
	if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pending_objects`).Scan(&pending); err != nil {
		r.t.Fatal(err)
	}
	if pending != 0 {
		r.t.Fatalf("after %s and kho reconcile: %d uploads still recorded as pending", after, pending)
	}
	// No integrity failure raised for an intact document.
	var integrity int
	if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'document.integrity_failure'`).Scan(&integrity); err != nil {
		r.t.Fatal(err)
	}
	if integrity != 0 {
		r.t.Fatalf("after %s: %d integrity failures recorded for intact documents", after, integrity)
	}
	// The audit trail verifies.
	o := r.call(ctx, "officer", http.MethodGet, "/v1/audit/verification", nil, nil)
	var rep struct {
		Valid bool `json:"valid"`
	}
	if o.err != nil || o.status != http.StatusOK || json.Unmarshal(o.body, &rep) != nil || !rep.Valid {
		r.t.Fatalf("after %s: the audit trail does not verify: %s", after, o)
	}
}

func (r *rig) pid(name string) int {
	r.t.Helper()
	ss, err := r.stack.Status(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, s := range ss {
		if s.Name == name && s.PID != 0 {
			return s.PID
		}
	}
	r.t.Fatalf("%s is not running", name)
	return 0
}

func (r *rig) signal(name string, sig syscall.Signal) {
	r.t.Helper()
	if err := syscall.Kill(r.pid(name), sig); err != nil {
		r.t.Fatal(err)
	}
}

// up starts again whatever of the stack is not running (and unseals Vault).
func (r *rig) up() {
	r.t.Helper()
	var err error
	if r.st, err = r.stack.Up(r.ctx); err != nil {
		r.t.Fatalf("restarting the stack: %v", err)
	}
}

// subtests returns the runner of the suite's faults: each fault is a
// subtest, the rig reports to the one running, and the suite stops at the
// first that fails (the next would start broken).
func (r *rig) subtests(t *testing.T) func(name string, f func(t *testing.T)) {
	return func(name string, f func(t *testing.T)) {
		ok := t.Run(name, func(t *testing.T) {
			parent := r.t
			r.t = t
			defer func() { r.t = parent }()
			f(t)
		})
		if !ok {
			t.FailNow()
		}
	}
}

// seed deposits some documents to read during the faults, and checks the
// invariants at the start.
func (r *rig) seed(t *testing.T) {
	for i := 0; i < 3; i++ {
		if err := r.depositRetrying(r.ctx, content(200<<10+i), fmt.Sprintf("seed-%d", i), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	r.check("the start")
}

// waitGone waits until a stopped process has exited (a zombie has). It is
// named by its start time too: its pid may be given to another process
// (a backend of a PostgreSQL) before this looks.
func (r *rig) waitGone(p devstack.Proc) {
	r.t.Helper()
	if _, err := r.until("process gone", 30*time.Second, func() error {
		if !p.Gone() {
			return fmt.Errorf("pid %d still runs", p.PID)
		}
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
}

// proc is the named service's process as it runs now.
func (r *rig) proc(name string) devstack.Proc {
	r.t.Helper()
	return devstack.ProcOf(r.pid(name))
}

func TestFaults(t *testing.T) {
	r := newRig(t)
	run := r.subtests(t)
	r.seed(t)

	run("khod killed mid-deposit", func(t *testing.T) {
		big := content(64 << 20)
		body, ctype := depositBody(big)
		pr, pw := io.Pipe()
		sent, killed := make(chan struct{}), make(chan struct{})
		go func() {
			// Half the document; the rest only once khod is killed.
			b := body.Bytes()
			pw.Write(b[:len(b)/2])
			close(sent)
			<-killed
			pw.Write(b[len(b)/2:])
			pw.Close()
		}()
		done := make(chan outcome, 1)
		go func() {
			done <- r.call(r.ctx, "issuer", http.MethodPost, "/v1/documents", struct{ io.Reader }{pr},
				map[string]string{"Content-Type": ctype, "Idempotency-Key": "killed-64mib"})
		}()
		<-sent
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		r.stopKhod(syscall.SIGKILL)
		close(killed)
		o := <-done
		pr.CloseWithError(io.ErrClosedPipe)
		if o.err == nil && o.status == http.StatusCreated {
			t.Fatal("a deposit acknowledged by a khod killed in its middle")
		}
		r.startKhod()
		restarted := time.Since(start)
		// Retried under its key after the restart: refused (409) while the
		// key's claim may still be alive, taken over once its heartbeats
		// have stopped long enough, and stored once.
		if err := r.depositRetrying(r.ctx, big, "killed-64mib", 90*time.Second); err != nil {
			t.Fatal(err)
		}
		r.times = append(r.times, timing{fault: "khod killed mid-deposit (64 MiB)", recovered: restarted},
			timing{fault: "  its retry (same key) acknowledged", recovered: time.Since(start)})
		r.check("khod killed mid-deposit")
	})

	run("MinIO frozen", func(t *testing.T) {
		r.fault("MinIO frozen", kho.DependencyMinIO,
			func() { r.signal("minio", syscall.SIGSTOP) },
			func() { r.signal("minio", syscall.SIGCONT) })
	})

	run("MinIO killed", func(t *testing.T) {
		var p devstack.Proc
		r.fault("MinIO killed", kho.DependencyMinIO,
			func() { p = r.proc("minio"); r.signal("minio", syscall.SIGKILL) },
			func() { r.waitGone(p); r.up() })
	})

	run("Vault sealed", func(t *testing.T) {
		r.fault("Vault sealed", kho.DependencyVault,
			func() {
				api, err := vault.NewAPIClient(r.st.VaultAddr, r.st.VaultRootToken, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if err := api.Sys().SealWithContext(r.ctx); err != nil {
					t.Fatal(err)
				}
			},
			r.up)
	})

	run("Vault frozen", func(t *testing.T) {
		r.fault("Vault frozen", kho.DependencyVault,
			func() { r.signal("vault", syscall.SIGSTOP) },
			func() { r.signal("vault", syscall.SIGCONT) })
	})

	run("Vault killed", func(t *testing.T) {
		var p devstack.Proc
		r.fault("Vault killed", kho.DependencyVault,
			func() { p = r.proc("vault"); r.signal("vault", syscall.SIGKILL) },
			func() { r.waitGone(p); r.up() })
	})

	run("khod's Vault token revoked", func(t *testing.T) {
		// khod logs in again by itself: no repair but time.
		api, err := vault.NewAPIClient(r.st.VaultAddr, r.st.VaultRootToken, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		id := r.aDocument()
		if _, err := api.Logical().WriteWithContext(r.ctx, "sys/leases/revoke-prefix/auth/approle/login", nil); err != nil {
			t.Fatal(err)
		}
		recovered, err := r.until("reads after the token was revoked", 60*time.Second, func() error {
			if o := r.download(r.ctx, id); o.err != nil || o.status != http.StatusOK {
				if o.err == nil && o.status != http.StatusServiceUnavailable {
					t.Fatalf("a read with khod's token revoked: %s, want 503 or success", o)
				}
				return fmt.Errorf("%s", o)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		r.times = append(r.times, timing{fault: "khod's Vault token revoked", recovered: recovered})
		r.check("khod's token revoked")
	})

	run("PostgreSQL frozen", func(t *testing.T) {
		var pid int
		r.fault("PostgreSQL frozen", kho.DependencyPostgreSQL,
			func() {
				// The postmaster and its backends, as a stuck disk would.
				pid = r.pid("postgres")
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				// A backend may end between the listing and the signal;
				// one that is gone needs no freezing.
				for _, p := range devstack.Children(pid) {
					if err := syscall.Kill(p, syscall.SIGSTOP); err != nil && err != syscall.ESRCH {
						t.Fatal(err)
					}
				}
			},
			func() {
				for _, p := range append([]int{pid}, devstack.Children(pid)...) {
					_ = syscall.Kill(p, syscall.SIGCONT)
				}
			})
	})

	run("PostgreSQL restarted", func(t *testing.T) {
		var p devstack.Proc
		r.fault("PostgreSQL restarted", kho.DependencyPostgreSQL,
			func() { p = r.proc("postgres"); r.signal("postgres", syscall.SIGINT) },
			func() { r.waitGone(p); r.up() })
	})

	run("PostgreSQL postmaster killed", func(t *testing.T) {
		var p devstack.Proc
		r.fault("PostgreSQL postmaster killed", kho.DependencyPostgreSQL,
			func() {
				p = r.proc("postgres")
				// The postmaster and its backends, as a machine losing it.
				_ = syscall.Kill(-p.PID, syscall.SIGKILL)
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			},
			func() { r.waitGone(p); r.up() })
	})

	run("20 deposits across khod restarts", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- r.depositRetrying(r.ctx, content(1<<20+i), fmt.Sprintf("restarts-%02d", i), 120*time.Second)
			}()
		}
		for k := 0; k < 2; k++ {
			time.Sleep(700 * time.Millisecond)
			r.stopKhod(syscall.SIGKILL)
			r.startKhod()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		r.check("20 deposits across khod restarts")
	})

	fmt.Println("\nfault                                      seen after   service back after the repair (khod: after the kill)")
	for _, tm := range r.times {
		seen := "–"
		if tm.detect > 0 {
			seen = tm.detect.Round(10 * time.Millisecond).String()
		}
		fmt.Printf("%-42s %-12s %s\n", tm.fault, seen, tm.recovered.Round(10*time.Millisecond))
	}
	fmt.Printf("invariants held after every fault: %d acknowledged documents read back byte-exact\n", len(r.acked))
}
