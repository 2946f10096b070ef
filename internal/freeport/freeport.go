// Package freeport picks loopback ports for servers a test or a benchmark
// starts of its own.
//
// Asking the kernel for port 0 and closing the listener gives a port from
// the ephemeral range, the range it also draws outgoing connections' source
// ports from. Between the pick and the server's bind, any outgoing
// connection on the machine (khod's to PostgreSQL, MinIO or Vault, a
// client's to khod) may take that port, and the server fails with "address
// already in use". Ports are therefore drawn below that range.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is where the draw starts: above the dev stack's usual ports
// (15432, 18200, 19000, 8480 and the cluster's nodes that follow them).
const lowest = 20000

var (
	mu    sync.Mutex
	taken = map[int]bool{} // handed out by this process, perhaps not yet bound
)

// Range finds n consecutive free loopback ports and returns the first. A
// port it returned is never returned again by this process.
func Range(n int) (int, error) {
	hi := ephemeralLow()
	if hi < lowest+1000 {
		return 0, fmt.Errorf("the kernel's ephemeral ports start at %d (net.ipv4.ip_local_port_range): no room below them for servers started by tests", hi)
	}
	mu.Lock()
	defer mu.Unlock()
	for try := 0; try < 500; try++ {
		base := lowest + rand.IntN(hi-lowest-n)
		if free(base, n) {
			for p := base; p < base+n; p++ {
				taken[p] = true
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free loopback ports in %d-%d", n, lowest, hi)
}

// Port is one free loopback port.
func Port() (int, error) { return Range(1) }

// Addr is 127.0.0.1 and one free port.
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

func free(base, n int) bool {
	for p := base; p < base+n; p++ {
		if taken[p] {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// ephemeralLow is the first port the kernel may give an outgoing
// connection (Linux's ip_local_port_range), or 32768 where that cannot be
// read.
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if lo, err := strconv.Atoi(f[0]); err == nil {
				return lo
			}
		}
	}
	return 32768
}
