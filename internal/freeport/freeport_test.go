package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestRangeIsFreeBelowTheEphemeralPortsAndNeverGivenTwice(t *testing.T) {
	hi := ephemeralLow()
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		base, err := Range(4)
		if err != nil {
			t.Fatal(err)
		}
		if base < lowest || base+4 > hi {
			t.Fatalf("range %d-%d is outside %d-%d", base, base+3, lowest, hi)
		}
		for p := base; p < base+4; p++ {
			if seen[p] {
				t.Fatalf("port %d given twice", p)
			}
			seen[p] = true
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				t.Fatalf("port %d was given but cannot be bound: %v", p, err)
			}
			l.Close()
		}
	}
}

func TestRangeSkipsABoundPort(t *testing.T) {
	// A port another process bound is not free, whatever this process knows.
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	delete(taken, p) // given back, but now bound by someone else
	mu.Unlock()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mu.Lock()
	ok := free(p, 1)
	mu.Unlock()
	if ok {
		t.Fatalf("port %d is bound but was reported free", p)
	}
}
