package devstack

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PIDFile records a process the stack started: its pid, the absolute path
// of its executable and its start time. down signals a pid only when /proc
// still shows that executable, started then, behind it, so a recycled pid
// is never signalled (PostgreSQL's backends run the postmaster's
// executable, and pids wrap at 32768 on a busy machine), and nothing is
// ever stopped by process name.
type PIDFile struct {
	path string
}

func (p PIDFile) write(pid int, exe string) error {
	return os.WriteFile(p.path, []byte(fmt.Sprintf("%d\n%s\n%s\n", pid, exe, ProcOf(pid).start)), 0o600)
}

// Proc is one process: its pid and its start time, so that a pid the
// kernel has since given to another process is not taken for it.
type Proc struct {
	PID   int
	start string // clock ticks after boot (/proc/PID/stat field 22); "" if gone
}

// ProcOf is the process that has pid now.
func ProcOf(pid int) Proc {
	return Proc{PID: pid, start: startOf(statOf(fmt.Sprintf("/proc/%d", pid)))}
}

// Gone reports whether the process has exited (a zombie has), its pid
// perhaps given to another process since.
func (p Proc) Gone() bool {
	f := statOf(fmt.Sprintf("/proc/%d", p.PID))
	return len(f) == 0 || f[0] == "Z" || startOf(f) != p.start
}

// startOf is the start time among a stat's fields after the command name
// (field 22 of the whole line, the 20th after the name).
func startOf(fields []string) string {
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// Running returns the pid when the recorded process is alive and still runs
// the recorded executable; 0 otherwise.
func (p PIDFile) Running() (int, error) {
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	pid, err := strconv.Atoi(lines[0])
	if err != nil || pid <= 1 || len(lines) < 2 || len(lines) > 3 {
		return 0, fmt.Errorf("pid file %s is malformed", p.path)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, nil // gone
	}
	if strings.TrimSuffix(exe, " (deleted)") != lines[1] {
		return 0, nil // the pid now belongs to someone else
	}
	recorded := ProcOf(pid)
	if len(lines) == 3 { // a pid file written before start times were recorded has two
		recorded.start = lines[2]
	}
	if recorded.Gone() {
		// Another process with the same executable took the pid, or a
		// zombie has exited and only its parent's wait is missing.
		return 0, nil
	}
	return pid, nil
}

// stop signals the recorded process, waits for it to exit, and removes the
// pid file. sig is the signal the service treats as a fast, clean shutdown.
func (p PIDFile) stop(sig syscall.Signal, grace time.Duration) (bool, error) {
	pid, err := p.Running()
	if err != nil {
		return false, err
	}
	if pid == 0 {
		_ = os.Remove(p.path)
		return false, nil
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if cur, _ := p.Running(); cur == 0 {
			_ = os.Remove(p.path)
			return true, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Still the recorded process (its pid not given to another since)?
	if cur, _ := p.Running(); cur == pid {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(200 * time.Millisecond)
	}
	_ = os.Remove(p.path)
	return true, nil
}

// startDetached starts bin in its own session, so it outlives the CLI, with
// output appended to logPath, and records it in pf.
func startDetached(pf PIDFile, bin string, args, env []string, logPath string, cred *syscall.Credential) (int, error) {
	exe, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return 0, err
	}
	exe, err = filepath.Abs(exe)
	if err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n--- %s started by kho dev up: %s %s\n", time.Now().Format(time.RFC3339), exe, strings.Join(args, " "))
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	if err := pf.write(pid, exe); err != nil {
		_ = cmd.Process.Kill()
		return 0, err
	}
	// Reap the child if it dies while this process still runs, so running()
	// does not mistake a zombie for a live server.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 300*time.Millisecond)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// LogError is a server that failed to start or build. Its message is one
// line naming the log; Tail holds the log's last lines for the CLI to show
// under it.
type LogError struct {
	Msg  string
	Log  string
	Tail string
}

func (e *LogError) Error() string { return e.Msg + " (see " + e.Log + ")" }

func logError(log, format string, args ...any) error {
	return &LogError{Msg: fmt.Sprintf(format, args...), Log: log, Tail: tail(log, 15)}
}

// tail returns the last n lines of a log, to explain a failed start.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Children lists the processes whose parent is pid (PostgreSQL's backends,
// say), read from /proc.
func Children(pid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		f := statOf(d)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if c, err := strconv.Atoi(filepath.Base(d)); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// statOf returns the fields of a /proc/PID/stat after the command name
// (state first), or nil when the process is gone.
func statOf(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
