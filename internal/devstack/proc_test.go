package devstack_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kho/internal/devstack"
)

func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

// recordPID writes a pid file for cmd as up would (its pid, then its
// executable), with extra lines after them (a start time; none, as an
// older kho wrote), and names it.
func recordPID(t *testing.T, path string, cmd *exec.Cmd, extra ...string) devstack.PIDFile {
	t.Helper()
	exe, err := os.Readlink("/proc/" + itoa(cmd.Process.Pid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	lines := append([]string{itoa(cmd.Process.Pid), exe}, extra...)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return devstack.NewPIDFile(path)
}

// down stops what up started by pid file and never anything else: a pid file
// naming a live process that runs another program is not acted on.
func TestPIDFileNeverSignalsAnotherProgram(t *testing.T) {
	cmd := sleeper(t)
	path := filepath.Join(t.TempDir(), "svc.pid")
	// The recorded program is not what runs under that pid (as after a pid
	// was recycled).
	if err := os.WriteFile(path, []byte(strings.Join([]string{itoa(cmd.Process.Pid), "/usr/local/bin/minio"}, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pf := devstack.NewPIDFile(path)
	if pid, err := pf.Running(); err != nil || pid != 0 {
		t.Fatalf("Running = %d, %v; want 0 for a pid running another program", pid, err)
	}
	if err := pf.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the unrelated process was signalled: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("stale pid file not removed: %v", err)
	}
}

func TestPIDFileStopsWhatItRecorded(t *testing.T) {
	cmd := sleeper(t)
	pf := recordPID(t, filepath.Join(t.TempDir(), "svc.pid"), cmd)
	if pid, _ := pf.Running(); pid != cmd.Process.Pid {
		t.Fatalf("Running = %d, want %d", pid, cmd.Process.Pid)
	}
	exited := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(exited) }()
	if err := pf.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("recorded process still running after Stop")
	}
}

// A pid recycled to a process of the same program (a PostgreSQL backend
// given the pid of a postmaster that was killed) is not the one recorded:
// its start time differs.
func TestPIDFileNeverSignalsTheSameProgramStartedLater(t *testing.T) {
	cmd := sleeper(t)
	pf := recordPID(t, filepath.Join(t.TempDir(), "svc.pid"), cmd, "1") // started at tick 1, long before
	if pid, err := pf.Running(); err != nil || pid != 0 {
		t.Fatalf("Running = %d, %v; want 0 for a process started after the one recorded", pid, err)
	}
	if err := pf.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the later process was signalled: %v", err)
	}
}

// A process is gone once it exited, zombie or reaped, and never while it
// runs.
func TestProcGone(t *testing.T) {
	cmd := sleeper(t)
	p := devstack.ProcOf(cmd.Process.Pid)
	if p.Gone() {
		t.Fatal("a running process is gone")
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for !p.Gone() { // a zombie until it is waited for
		if time.Now().After(deadline) {
			t.Fatal("a killed process is not gone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _ = cmd.Process.Wait()
	if !p.Gone() {
		t.Fatal("a reaped process is not gone")
	}
}

func TestPIDFileMalformed(t *testing.T) {
	for name, body := range map[string]string{"garbage": "abc\n", "pid 1": "1\n/sbin/init\n", "no exe": "1234\n", "extra lines": "1234\n/bin/sleep\n1\nx\n"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.pid")
			_ = os.WriteFile(path, []byte(body), 0o600)
			if _, err := devstack.NewPIDFile(path).Running(); err == nil {
				t.Fatal("malformed pid file accepted")
			}
		})
	}
	if pid, err := devstack.NewPIDFile(filepath.Join(t.TempDir(), "none.pid")).Running(); pid != 0 || err != nil {
		t.Fatalf("missing pid file: %d, %v", pid, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
