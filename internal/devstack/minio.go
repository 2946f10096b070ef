package devstack

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kho/storage/minioadmin"
)

// The bucket and MinIO user khod gets in the dev stack.
const (
	minioBucket   = "kho-documents"
	minioKhodUser = "khod"
)

func (s *Stack) minioPID() PIDFile { return PIDFile{s.path("run", "minio.pid")} }

func (s *Stack) upMinIO(ctx context.Context, st *State) error {
	bin, err := s.minioBinary(ctx)
	if err != nil {
		return err
	}
	st.MinIOBinary = bin
	st.MinIOEndpoint = fmt.Sprintf("127.0.0.1:%d", s.Ports.MinIO)
	st.MinIOBucket = minioBucket
	st.MinIOAccessKey = minioKhodUser
	if st.MinIORootUser == "" {
		st.MinIORootUser, st.MinIORootPassword = "kho-root", secret(16)
	}
	if st.MinIOSecretKey == "" {
		st.MinIOSecretKey = secret(16)
	}
	// MinIO starts with these credentials: keep them before it does, or a
	// failed start would leave a server whose root password is lost.
	if err := s.saveState(st); err != nil {
		return err
	}
	logPath := s.path("logs", "minio.log")
	if pid, err := s.minioPID().Running(); err != nil {
		return err
	} else if pid != 0 {
		s.say("minio already running (pid %d) on %s", pid, st.MinIOEndpoint)
	} else {
		if !portFree(s.Ports.MinIO) {
			return fmt.Errorf("port %d is taken by a process this stack did not start; stop it or set KHO_DEV_MINIO_PORT", s.Ports.MinIO)
		}
		pid, err := StartMinIO(s.minioPID(), bin, s.path("minio", "data"), s.Ports.MinIO, st.MinIORootUser, st.MinIORootPassword, logPath)
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		s.say("minio starting (pid %d) on %s", pid, st.MinIOEndpoint)
	}
	if err := s.waitFor(ctx, "minio", 60*time.Second, s.minioPID(), logPath, func(ctx context.Context) error {
		return MinIOReady(ctx, st.MinIOEndpoint)
	}); err != nil {
		return err
	}
	return s.bootstrapMinIO(ctx, st)
}

// bootstrapMinIO makes khod's bucket and its user, limited to the bucket.
func (s *Stack) bootstrapMinIO(ctx context.Context, st *State) error {
	root, err := minioadmin.New(st.MinIOEndpoint, st.MinIORootUser, st.MinIORootPassword)
	if err != nil {
		return err
	}
	if err := WhileMinIOStarts(ctx, func() error { return root.EnsureBucket(ctx, st.MinIOBucket) }); err != nil {
		return err
	}
	if err := root.EnsureUser(ctx, st.MinIOAccessKey, st.MinIOSecretKey, st.MinIOBucket); err != nil {
		return err
	}
	s.say("minio: bucket %s and user %s (limited to it) ready", st.MinIOBucket, st.MinIOAccessKey)
	return nil
}

// StartMinIO starts a single-drive MinIO server on 127.0.0.1:port. Tests use
// it too, to run a MinIO of their own that they can stop and restart.
func StartMinIO(pf PIDFile, bin, dataDir string, port int, rootUser, rootPassword, logPath string, extraEnv ...string) (int, error) {
	env := []string{
		"MINIO_ROOT_USER=" + rootUser,
		"MINIO_ROOT_PASSWORD=" + rootPassword,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"HOME=" + dataDir,
		"PATH=/usr/bin:/bin",
	}
	env = append(env, extraEnv...)
	return startDetached(pf, bin, []string{"server", "--quiet", "--address", "127.0.0.1:" + strconv.Itoa(port), dataDir}, env, logPath, nil)
}

// NewPIDFile names a pid file, for callers outside the package that start
// servers with StartMinIO.
func NewPIDFile(path string) PIDFile { return PIDFile{path: path} }

// Stop stops the process recorded in the pid file.
func (p PIDFile) Stop() error {
	_, err := p.stop(syscall.SIGTERM, 20*time.Second)
	return err
}

// WhileMinIOStarts retries fn for up to 30 s while MinIO answers that it is
// still initialising: its readiness endpoint can say ready a moment before
// its S3 API serves.
func WhileMinIOStarts(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil || !strings.Contains(err.Error(), "not initialized") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// MinIOReady asks MinIO's readiness endpoint.
func MinIOReady(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+"/minio/health/ready", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("minio readiness answered %s", resp.Status)
	}
	return nil
}

func (s *Stack) stopMinIO() (bool, error) {
	return s.minioPID().stop(syscall.SIGTERM, 20*time.Second)
}

func (s *Stack) minioStatus(ctx context.Context, st *State) ServiceStatus {
	ss := ServiceStatus{Name: "minio", Address: st.MinIOEndpoint}
	ss.PID, _ = s.minioPID().Running()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := MinIOReady(cctx, st.MinIOEndpoint); err != nil {
		ss.Detail = "not ready"
		return ss
	}
	ss.Healthy, ss.Detail = true, "bucket "+st.MinIOBucket
	return ss
}
