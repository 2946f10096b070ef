package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"kho/internal/devstack"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on every Linux this runs on.
const clockTicks = 100

// cpuSeconds is the CPU (user + system) a process has spent. With tree, it
// adds the live children's and the reaped children's, as for PostgreSQL,
// whose work is done by backends the postmaster forks.
func cpuSeconds(pid int, tree bool) (float64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	ticks := f[11] + f[12] // utime, stime (fields 14 and 15)
	if tree {
		ticks += f[13] + f[14] // cutime, cstime
		for _, c := range devstack.Children(pid) {
			if cf, err := statFields(c); err == nil {
				ticks += cf[11] + cf[12]
			}
		}
	}
	return float64(ticks) / clockTicks, nil
}

// statFields reads /proc/PID/stat's fields after the command name, as
// integers (field 3 of the man page is index 0).
func statFields(pid int) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat is malformed", pid)
	}
	parts := strings.Fields(s[i+1:])
	out := make([]int64, len(parts))
	for j, p := range parts {
		out[j], _ = strconv.ParseInt(p, 10, 64)
	}
	if len(out) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat is short", pid)
	}
	return out, nil
}

// rssKiB reads a process's resident set and its peak (VmRSS, VmHWM) in KiB.
func rssKiB(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	return rss, peak, sc.Err()
}

// resetPeak makes VmHWM start again from the current resident set, so that
// each measurement sees its own peak.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
