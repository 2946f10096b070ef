// Package bench measures kho end to end over HTTP beside MinIO on its own:
// deposits, owners' downloads and consent-checked fetches through a khod it
// starts for the purpose, and the same bytes put and got with minio-go on the
// dev stack's MinIO and on a second MinIO encrypting with its own static KMS
// key (SSE-S3), all in one run. For every cell it counts what each process
// spent: CPU seconds from /proc, calls to Vault, MinIO and PostgreSQL from
// khod's metrics, and khod's peak resident set.
//
// It is what `kho bench` and `make bench` run; the README's Performance
// section is its output.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"kho"
	"kho/internal/devidp"
	"kho/internal/devstack"
	"kho/internal/freeport"
	"kho/storage/minioadmin"
)

// Operations measured. The kho ones go through khod over HTTP; the others
// are minio-go against MinIO directly.
const (
	OpDeposit  = "deposit"  // an agency deposits a text document (multipart POST)
	OpDownload = "download" // its owner downloads it
	OpFetch    = "fetch"    // another agency fetches it for a procedure, under the owner's consent
	OpRawPut   = "raw-put"  // minio-go PutObject of known length
	OpRawGet   = "raw-get"
	OpSSEPut   = "sse-put" // the same on a MinIO encrypting with SSE-S3 (static KMS key)
	OpSSEGet   = "sse-get"
)

// AllOps lists the operations in the order they are reported.
var AllOps = []string{OpDeposit, OpRawPut, OpSSEPut, OpDownload, OpFetch, OpRawGet, OpSSEGet}

// Config says what to measure.
type Config struct {
	Stack       *devstack.Stack
	State       *devstack.State
	KhodBin     string
	Sizes       []int64
	Concurrency []int
	Ops         []string
	Duration    time.Duration // per cell
	Memory      bool          // also deposit and download one MemorySize document and watch khod's memory
	MemorySize  int64
	Dir         string    // where results, logs and profiles go
	Profile     string    // an operation to profile khod during (its cells at every size and concurrency)
	Progress    io.Writer // one line per cell as it runs
}

// Result is one cell: an operation at one size and concurrency.
type Result struct {
	Op          string  `json:"op"`
	Size        int64   `json:"size"`
	Concurrency int     `json:"concurrency"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"mb_per_s"`
	OpsPerSec   float64 `json:"ops_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	// CPU milliseconds per operation, by process: khod, minio (the dev
	// stack's), minio-sse, vault, postgres, client (this process).
	CPUms map[string]float64 `json:"cpu_ms_per_op"`
	// Calls khod made per operation, by dependency (vault, minio,
	// postgres), counted by its own metrics.
	Calls map[string]float64 `json:"calls_per_op,omitempty"`
	// khod's peak resident set during the cell, MiB.
	KhodPeakRSSMiB float64 `json:"khod_peak_rss_mib,omitempty"`
}

// Memory is what one large deposit and download did to khod's memory.
type Memory struct {
	Size              int64   `json:"size"`
	DepositRSSGrowMiB float64 `json:"deposit_rss_growth_mib"`
	DownloadRSSGrowMi float64 `json:"download_rss_growth_mib"`
	AllocPerMiBKiB    float64 `json:"download_alloc_per_mib_kib"` // bytes khod allocated per MiB downloaded, KiB
	DepositMBps       float64 `json:"deposit_mb_per_s"`
	DownloadMBps      float64 `json:"download_mb_per_s"`
}

// Report is a whole run.
type Report struct {
	Started  time.Time `json:"started"`
	Machine  string    `json:"machine"`
	Version  string    `json:"version"`
	Duration string    `json:"cell_duration"`
	Results  []Result  `json:"results"`
	Memory   *Memory   `json:"memory,omitempty"`
	Profiles []string  `json:"profiles,omitempty"`
}

// runner holds what the cells share.
type runner struct {
	cfg      Config
	khod     *exec.Cmd
	khodURL  string
	metrics  string
	pprof    string
	raw, sse *minio.Client
	sseStop  func()
	http     *http.Client
	pids     map[string]int // process name → pid
	tree     map[string]bool

	citizen  kho.SubjectID
	meta     []byte // a deposit's metadata, for the run's citizen
	handle   string
	tokens   map[string]string // issuer, reader, owner, operator
	docs     map[int64]string  // size → a document deposited for reading
	content  map[int64][]byte
	rawName  map[int64]string
	runID    string
	rawCount atomic.Int64
}

const (
	issuerAgency = "000.06.16.G09" // deposits birth certificates (GKS)
	readerAgency = "000.00.15.H29" // fetches them for passports (CHC)
	benchBucket  = "kho-bench"
)

// Run measures every cell and returns the report. Whatever it started
// (khod, the SSE MinIO) is stopped and whatever it stored is removed, also
// when it fails.
func Run(ctx context.Context, cfg Config) (_ *Report, err error) {
	r := &runner{cfg: cfg, tokens: map[string]string{}, docs: map[int64]string{}, content: map[int64][]byte{}, rawName: map[int64]string{}}
	r.runID = strconv.FormatInt(time.Now().Unix(), 36)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	defer r.stop()
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if cerr := r.cleanup(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), Machine: machine(), Duration: cfg.Duration.String()}
	for _, size := range cfg.Sizes {
		for _, c := range cfg.Concurrency {
			for _, op := range AllOps {
				if !slices.Contains(cfg.Ops, op) {
					continue
				}
				var stopProfile func() (string, error)
				if cfg.Profile == op {
					stopProfile = r.startProfile(ctx, fmt.Sprintf("%s-%s-c%d", op, SizeName(size), c), cfg.Duration)
				}
				res, err := r.cell(ctx, op, size, c)
				if stopProfile != nil {
					if p, perr := stopProfile(); perr == nil {
						rep.Profiles = append(rep.Profiles, p)
					} else {
						fmt.Fprintf(cfg.Progress, "  profile: %v\n", perr)
					}
				}
				if err != nil {
					return rep, err
				}
				rep.Results = append(rep.Results, *res)
				fmt.Fprintf(cfg.Progress, "  %-8s %6s c=%-2d  %8.1f MB/s %8.1f ops/s  p50 %7.1f ms  p99 %7.1f ms  khod %5.2f ms CPU/op%s\n",
					op, SizeName(size), c, res.MBps, res.OpsPerSec, res.P50ms, res.P99ms, res.CPUms["khod"], errNote(res))
			}
		}
	}
	if cfg.Memory {
		m, err := r.memory(ctx, cfg.MemorySize)
		if err != nil {
			return rep, err
		}
		rep.Memory = m
	}
	return rep, nil
}

func errNote(r *Result) string {
	if r.Errors == 0 {
		return ""
	}
	return fmt.Sprintf("  %d FAILED: %s", r.Errors, r.FirstError)
}

// SizeName writes 1024 as 1KiB, 1<<20 as 1MiB.
func SizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// ParseSize reads 1KiB, 64MiB, 1GiB or a number of bytes.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				break
			}
			return n * u.mult, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a size such as 1KiB, 1MiB or 64MiB", s)
	}
	return n, nil
}

// start runs khod (rate limits out of the way, metrics and profiles on
// ports of their own) and the SSE MinIO, and finds every process to watch.
func (r *runner) start(ctx context.Context) error {
	st := r.cfg.State
	r.pids = map[string]int{}
	listen, err := freeport.Addr()
	if err != nil {
		return err
	}
	if r.metrics, err = freeport.Addr(); err != nil {
		return err
	}
	if r.pprof, err = freeport.Addr(); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(r.cfg.Dir, "khod.log"))
	if err != nil {
		return err
	}
	r.khod = exec.Command(r.cfg.KhodBin, "--rate-limit=1000000", "--rate-burst=1000000", "--metrics-listen="+r.metrics,
		"--pprof-listen="+r.pprof, "--log-level=warn", "--reconcile-interval=0", "--max-in-memory=64")
	r.khod.Env = os.Environ()
	for _, kv := range st.KhodEnv() {
		if kv[0] == "KHO_LISTEN" {
			kv[1] = listen
		}
		r.khod.Env = append(r.khod.Env, kv[0]+"="+kv[1])
	}
	r.khod.Stdout, r.khod.Stderr = logf, logf
	if err := r.khod.Start(); err != nil {
		return fmt.Errorf("start khod (%s): %v", r.cfg.KhodBin, err)
	}
	r.khodURL = "http://" + listen
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute, DisableCompression: true}
	r.http = &http.Client{Transport: tr}
	if err := waitReady(ctx, r.khodURL+"/readyz", 60*time.Second); err != nil {
		return fmt.Errorf("khod did not become ready (%v); see %s", err, filepath.Join(r.cfg.Dir, "khod.log"))
	}

	root, err := minioadmin.New(st.MinIOEndpoint, st.MinIORootUser, st.MinIORootPassword)
	if err != nil {
		return err
	}
	r.raw = root.S3()
	if err := ensureBucket(ctx, r.raw, benchBucket); err != nil {
		return fmt.Errorf("minio: %v", err)
	}
	if err := r.startSSE(ctx); err != nil {
		return err
	}

	r.pids["khod"], r.pids["client"] = r.khod.Process.Pid, os.Getpid()
	r.tree = map[string]bool{"postgres": true}
	services, err := r.cfg.Stack.Status(ctx)
	if err != nil {
		return err
	}
	for _, s := range services {
		if s.PID == 0 {
			return fmt.Errorf("%s is not running: start the stack with kho dev up", s.Name)
		}
		r.pids[s.Name] = s.PID
	}
	return nil
}

// startSSE runs a second MinIO on a folder of its own, with a static KMS key
// so that it encrypts every object it stores (SSE-S3).
func (r *runner) startSSE(ctx context.Context) error {
	st := r.cfg.State
	if st.MinIOBinary == "" {
		return errors.New("the dev stack does not say where its MinIO binary is: run kho dev up")
	}
	addr, err := freeport.Addr()
	if err != nil {
		return err
	}
	_, portS, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portS)
	dir := filepath.Join(r.cfg.Dir, "minio-sse")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	user, pass := "benchroot", base64.RawURLEncoding.EncodeToString(key[:16])
	pf := devstack.NewPIDFile(filepath.Join(dir, "minio.pid"))
	pid, err := devstack.StartMinIO(pf, st.MinIOBinary, filepath.Join(dir, "data"), port, user, pass, filepath.Join(dir, "minio.log"),
		"MINIO_KMS_SECRET_KEY=kho-bench-key:"+base64.StdEncoding.EncodeToString(key))
	if err != nil {
		return fmt.Errorf("start the SSE MinIO: %v", err)
	}
	r.sseStop = func() { _ = pf.Stop(); _ = os.RemoveAll(dir) }
	if err := waitReady(ctx, "http://"+addr+"/minio/health/ready", 60*time.Second); err != nil {
		return fmt.Errorf("the SSE MinIO did not become ready (%v); see %s", err, filepath.Join(dir, "minio.log"))
	}
	r.sse, err = minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(user, pass, "")})
	if err != nil {
		return err
	}
	if err := devstack.WhileMinIOStarts(ctx, func() error { return ensureBucket(ctx, r.sse, benchBucket) }); err != nil {
		return fmt.Errorf("the SSE MinIO: %v", err)
	}
	r.pids["minio-sse"] = pid
	return nil
}

func ensureBucket(ctx context.Context, c *minio.Client, bucket string) error {
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil || ok {
		return err
	}
	return c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
}

func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return last
}

func (r *runner) stop() {
	if r.khod != nil && r.khod.Process != nil {
		_ = r.khod.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = r.khod.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = r.khod.Process.Kill()
		}
	}
	if r.sseStop != nil {
		r.sseStop()
	}
}

// prepare makes a citizen of its own for this run, its consent to the
// reading agency, and one document of each size to read.
func (r *runner) prepare(ctx context.Context) error {
	idp, err := devidp.Load(r.cfg.State.DevIdPKey)
	if err != nil {
		return err
	}
	var n [4]byte
	_, _ = rand.Read(n[:])
	r.citizen = kho.SubjectID(fmt.Sprintf("001097%06d", (uint32(n[0])<<16|uint32(n[1])<<8|uint32(n[2]))%1000000))
	r.meta, _ = json.Marshal(map[string]any{"subject_id": r.citizen, "type": "GKS", "name": "Giấy khai sinh (kho bench)",
		"issued_on": "2024-01-15", "media_type": "text/plain"})
	for name, as := range map[string]string{
		"issuer": "agency:" + issuerAgency, "reader": "agency:" + readerAgency,
		"owner": "citizen:" + string(r.citizen), "operator": "operator:op01",
	} {
		p, err := devidp.ParseAs(as)
		if err != nil {
			return err
		}
		if r.tokens[name], err = idp.Mint(p, "kho", 4*time.Hour); err != nil {
			return err
		}
	}
	for _, size := range r.cfg.Sizes {
		r.content[size] = textContent(size)
		if !slices.Contains(r.cfg.Ops, OpDownload) && !slices.Contains(r.cfg.Ops, OpFetch) && !slices.Contains(r.cfg.Ops, OpDeposit) {
			continue
		}
		id, handle, err := r.deposit(ctx, size)
		if err != nil {
			return fmt.Errorf("deposit a %s document to read: %v", SizeName(size), err)
		}
		r.docs[size], r.handle = id, handle
	}
	for _, size := range r.cfg.Sizes {
		name := fmt.Sprintf("%s/read-%s", r.runID, SizeName(size))
		for _, c := range []*minio.Client{r.raw, r.sse} {
			if _, err := c.PutObject(ctx, benchBucket, name, bytes.NewReader(r.content[size]), size, putOpts(c == r.sse)); err != nil {
				return fmt.Errorf("minio: put an object to read: %v", err)
			}
		}
		r.rawName[size] = name
	}
	if slices.Contains(r.cfg.Ops, OpFetch) {
		terms := map[string]any{"grantee": readerAgency, "procedure": "CHC", "purpose": "Đo hiệu năng / benchmark",
			"document_types": []string{"GKS"}, "valid_until": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339),
			"mode": "standing", "data_life_days": 1}
		b, _ := json.Marshal(terms)
		if err := r.call(ctx, "owner", http.MethodPost, "/v1/me/consents", "application/json", b, http.StatusCreated); err != nil {
			return fmt.Errorf("grant the consent the fetches use: %v", err)
		}
	}
	return nil
}

// cleanup erases the run's store (its key shredded, its objects removed)
// and the objects put directly.
func (r *runner) cleanup(ctx context.Context) error {
	var errs []error
	if r.handle != "" {
		if err := r.call(ctx, "operator", http.MethodPost, "/v1/subjects/"+r.handle+"/erasure", "", nil, http.StatusOK); err != nil {
			errs = append(errs, fmt.Errorf("erase the run's store %s: %v", r.handle, err))
		}
	}
	for _, c := range []*minio.Client{r.raw, r.sse} {
		if c == nil {
			continue
		}
		objs := c.ListObjects(ctx, benchBucket, minio.ListObjectsOptions{Prefix: r.runID + "/", Recursive: true})
		for e := range c.RemoveObjects(ctx, benchBucket, objs, minio.RemoveObjectsOptions{}) {
			errs = append(errs, fmt.Errorf("remove %s: %v", e.ObjectName, e.Err))
		}
	}
	return errors.Join(errs...)
}

func putOpts(sse bool) minio.PutObjectOptions {
	o := minio.PutObjectOptions{ContentType: "text/plain", DisableContentSha256: true}
	if sse {
		o.ServerSideEncryption = encrypt.NewSSE()
	}
	return o
}

// textContent is size bytes of text a deposit accepts as text/plain.
func textContent(size int64) []byte {
	line := []byte("Giấy khai sinh / birth certificate — bản sao số hoá để đo hiệu năng (kho bench).\n")
	out := make([]byte, 0, size)
	for int64(len(out)) < size {
		out = append(out, line...)
	}
	out = out[:size]
	// Never end in the middle of a UTF-8 sequence.
	for i := len(out) - 1; i >= 0 && i >= len(out)-4; i-- {
		if out[i] < 0x80 {
			break
		}
		out[i] = '.'
	}
	return out
}

func (r *runner) call(ctx context.Context, who, method, path, ctype string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, r.khodURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.tokens[who])
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%s %s answered %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// depositBody is a multipart body around content, of known length.
func (r *runner) depositBody(content io.Reader, size int64) (io.Reader, int64, string) {
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	_ = mw.WriteField("metadata", string(r.meta))
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="gks.txt"`)
	h.Set("Content-Type", "text/plain")
	_, _ = mw.CreatePart(h)
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	n := int64(head.Len()) + size + int64(len(tail))
	return io.MultiReader(bytes.NewReader(head.Bytes()), content, strings.NewReader(tail)), n, mw.FormDataContentType()
}

func (r *runner) deposit(ctx context.Context, size int64) (id, handle string, err error) {
	return r.depositFrom(ctx, bytes.NewReader(r.content[size]), size)
}

func (r *runner) depositFrom(ctx context.Context, content io.Reader, size int64) (id, handle string, err error) {
	body, n, ctype := r.depositBody(content, size)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.khodURL+"/v1/documents", body)
	if err != nil {
		return "", "", err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+r.tokens["issuer"])
	resp, err := r.http.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("deposit answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var d struct {
		ID      string `json:"id"`
		Subject string `json:"subject"`
		Size    int64  `json:"size"`
	}
	if err := json.Unmarshal(b, &d); err != nil || d.ID == "" || d.Size != size {
		return "", "", fmt.Errorf("deposit answered an unexpected document: %s", b)
	}
	return d.ID, d.Subject, nil
}

// read gets a document's content as who and checks its length.
func (r *runner) read(ctx context.Context, who, path string, size int64, buf []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.khodURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.tokens[who])
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("read %d bytes of %d", n, size)
	}
	return nil
}

// op runs one operation of kind at size.
func (r *runner) op(ctx context.Context, kind string, size int64, buf []byte) error {
	switch kind {
	case OpDeposit:
		_, _, err := r.deposit(ctx, size)
		return err
	case OpDownload:
		return r.read(ctx, "owner", "/v1/documents/"+r.docs[size]+"/content", size, buf)
	case OpFetch:
		return r.read(ctx, "reader", "/v1/documents/"+r.docs[size]+"/content?procedure=CHC", size, buf)
	case OpRawPut, OpSSEPut:
		c := r.raw
		if kind == OpSSEPut {
			c = r.sse
		}
		name := fmt.Sprintf("%s/put-%d", r.runID, r.rawCount.Add(1))
		_, err := c.PutObject(ctx, benchBucket, name, bytes.NewReader(r.content[size]), size, putOpts(kind == OpSSEPut))
		return err
	case OpRawGet, OpSSEGet:
		c := r.raw
		if kind == OpSSEGet {
			c = r.sse
		}
		obj, err := c.GetObject(ctx, benchBucket, r.rawName[size], minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		n, err := io.CopyBuffer(io.Discard, obj, buf)
		if err == nil && n != size {
			err = fmt.Errorf("read %d bytes of %d", n, size)
		}
		return err
	}
	return fmt.Errorf("unknown operation %q", kind)
}

// snapshot is what the processes had spent at one moment.
type snapshot struct {
	cpu   map[string]float64
	calls map[string]float64
	alloc float64
}

func (r *runner) snap(ctx context.Context) (snapshot, error) {
	s := snapshot{cpu: map[string]float64{}}
	for name, pid := range r.pids {
		v, err := cpuSeconds(pid, r.tree[name])
		if err != nil {
			return s, fmt.Errorf("%s (pid %d) is gone: %v", name, pid, err)
		}
		s.cpu[name] = v
	}
	var err error
	s.calls, s.alloc, err = r.scrape(ctx)
	return s, err
}

// scrape reads khod's calls to its dependencies and its allocations so far.
func (r *runner) scrape(ctx context.Context) (map[string]float64, float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.metrics+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("khod's metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	calls := map[string]float64{}
	var alloc float64
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "kho_outbound_calls_total{"):
			i := strings.Index(line, `dependency="`)
			j := strings.LastIndexByte(line, ' ')
			if i < 0 || j < 0 {
				continue
			}
			dep := line[i+len(`dependency="`):]
			dep = dep[:strings.IndexByte(dep, '"')]
			v, _ := strconv.ParseFloat(line[j+1:], 64)
			calls[dep] += v
		case strings.HasPrefix(line, "go_memstats_alloc_bytes_total "):
			alloc, _ = strconv.ParseFloat(strings.TrimPrefix(line, "go_memstats_alloc_bytes_total "), 64)
		}
	}
	return calls, alloc, nil
}

// cell runs c workers doing op for the configured duration (an operation
// started before the end is finished and counted) and measures it.
func (r *runner) cell(ctx context.Context, op string, size int64, c int) (*Result, error) {
	// A short warm-up: connections open, caches filled.
	buf := make([]byte, 256<<10)
	for i := 0; i < min(c, 4); i++ {
		if err := r.op(ctx, op, size, buf); err != nil {
			return nil, fmt.Errorf("%s %s: %v", op, SizeName(size), err)
		}
	}
	if err := resetPeak(r.pids["khod"]); err != nil {
		return nil, err
	}
	before, err := r.snap(ctx)
	if err != nil {
		return nil, err
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		ops, errs atomic.Int64
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(r.cfg.Duration)
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := r.op(ctx, op, size, buf); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, time.Since(t0))
				ops.Add(1)
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	after, err := r.snap(ctx)
	if err != nil {
		return nil, err
	}
	_, peak, _ := rssKiB(r.pids["khod"])
	n := ops.Load()
	res := &Result{Op: op, Size: size, Concurrency: c, Ops: n, Errors: errs.Load(), Seconds: elapsed,
		CPUms: map[string]float64{}, KhodPeakRSSMiB: float64(peak) / 1024}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	if n == 0 {
		return res, nil
	}
	res.MBps = float64(n*size) / elapsed / 1e6
	res.OpsPerSec = float64(n) / elapsed
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	res.P50ms = ms(latencies[len(latencies)/2])
	res.P99ms = ms(latencies[min(len(latencies)-1, len(latencies)*99/100)])
	for name := range r.pids {
		if name == "minio-sse" && op != OpSSEPut && op != OpSSEGet {
			continue
		}
		res.CPUms[name] = (after.cpu[name] - before.cpu[name]) * 1000 / float64(n)
	}
	if op == OpDeposit || op == OpDownload || op == OpFetch {
		res.Calls = map[string]float64{}
		for dep, v := range after.calls {
			res.Calls[dep] = (v - before.calls[dep]) / float64(n)
		}
	} else {
		delete(res.CPUms, "khod")
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startProfile takes a CPU profile of khod for d (a cell's length) and
// writes it to the results folder; the returned function waits for it.
func (r *runner) startProfile(ctx context.Context, name string, d time.Duration) func() (string, error) {
	done := make(chan struct {
		path string
		err  error
	}, 1)
	go func() {
		path := filepath.Join(r.cfg.Dir, "khod-"+name+".pprof")
		err := func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.pprof, max(1, int(d.Seconds()))), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil && len(b) == 0 {
				return err
			}
			return os.WriteFile(path, b, 0o644)
		}()
		done <- struct {
			path string
			err  error
		}{path, err}
	}()
	return func() (string, error) {
		res := <-done
		return res.path, res.err
	}
}

// textReader is size bytes of text, made as they are read.
type textReader struct {
	left int64
	line []byte
	off  int
}

func (t *textReader) Read(p []byte) (int, error) {
	if t.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && t.left > 0 {
		c := copy(p[n:min(len(p), n+int(min(t.left, int64(len(t.line)-t.off))))], t.line[t.off:])
		n += c
		t.left -= int64(c)
		t.off = (t.off + c) % len(t.line)
	}
	return n, nil
}

// memory deposits and downloads one document of size (streamed, never held
// in this process either) and reports what it did to khod's resident set,
// and what khod allocated per MiB it served.
func (r *runner) memory(ctx context.Context, size int64) (*Memory, error) {
	pid := r.pids["khod"]
	m := &Memory{Size: size}
	line := []byte("Hồ sơ số hoá lớn / a large digitised dossier (kho bench).\n")
	rss0, _, err := rssKiB(pid)
	if err != nil {
		return nil, err
	}
	if err := resetPeak(pid); err != nil {
		return nil, err
	}
	t0 := time.Now()
	id, _, err := r.depositFrom(ctx, &textReader{left: size, line: line}, size)
	if err != nil {
		return nil, fmt.Errorf("deposit %s: %v", SizeName(size), err)
	}
	m.DepositMBps = float64(size) / time.Since(t0).Seconds() / 1e6
	_, peak, _ := rssKiB(pid)
	m.DepositRSSGrowMiB = float64(peak-rss0) / 1024
	rss1, _, _ := rssKiB(pid)
	if err := resetPeak(pid); err != nil {
		return nil, err
	}
	_, alloc0, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	t0 = time.Now()
	if err := r.read(ctx, "owner", "/v1/documents/"+id+"/content", size, make([]byte, 256<<10)); err != nil {
		return nil, fmt.Errorf("download %s: %v", SizeName(size), err)
	}
	m.DownloadMBps = float64(size) / time.Since(t0).Seconds() / 1e6
	_, peak, _ = rssKiB(pid)
	m.DownloadRSSGrowMi = float64(peak-rss1) / 1024
	_, alloc1, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	m.AllocPerMiBKiB = (alloc1 - alloc0) / float64(size>>20) / 1024
	fmt.Fprintf(r.cfg.Progress, "  memory   %6s       deposit %6.1f MB/s, khod RSS +%.1f MiB; download %6.1f MB/s, khod RSS +%.1f MiB, %.1f KiB allocated per MiB\n",
		SizeName(size), m.DepositMBps, m.DepositRSSGrowMiB, m.DownloadMBps, m.DownloadRSSGrowMi, m.AllocPerMiBKiB)
	return m, nil
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			mem = fmt.Sprintf(", %d GiB", (kb+(1<<19))>>20)
		}
	}
	return fmt.Sprintf("%d cores (%s)%s, MinIO single drive", runtime.NumCPU(), cpu, mem)
}
