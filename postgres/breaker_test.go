package postgres_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"kho"
	"kho/breaker"
	"kho/internal/testenv"
	"kho/postgres"
)

// A PostgreSQL that stops answering (connections up, nothing comes back):
// statements fail after the idle timeout as outages, then the circuit
// opens and a statement fails at once, naming PostgreSQL; an error
// PostgreSQL reports itself (a syntax error) never counts.
func TestSilentPostgreSQLOpensTheCircuit(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	target := strings.TrimPrefix(st.DatabaseURL[strings.Index(st.DatabaseURL, "@")+1:], "")
	target = target[:strings.IndexAny(target, "/?")]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	silent := false
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			// Server to client stops when silent: the client's reads wait.
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					mu.Lock()
					quiet := silent
					mu.Unlock()
					if n > 0 && !quiet {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { _, _ = io.Copy(s, c) }()
		}
	}()
	url := strings.Replace(st.DatabaseURL, target, ln.Addr().String(), 1)
	b := breaker.New(kho.DependencyPostgreSQL, 2, time.Hour)
	db, err := postgres.Open(ctx, url, postgres.WithIdleTimeout(3*time.Second), postgres.WithBreaker(b), postgres.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < 3; i++ {
		if _, err := db.Pool.Exec(ctx, `SELEKT 1`); err == nil {
			t.Fatal("a syntax error was accepted")
		}
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT 1 WHERE false`).Scan(&n); err == nil {
			t.Fatal("no rows, no error")
		}
		var s string
		if err := db.Pool.QueryRow(ctx, `SELECT NULL::text`).Scan(&s); err == nil {
			t.Fatal("NULL scanned into a string")
		}
	}
	if open, _ := b.State(); open {
		t.Fatal("errors PostgreSQL reported, empty results or values that did not scan opened the circuit")
	}
	mu.Lock()
	silent = true
	mu.Unlock()
	for i := 0; i < 2; i++ {
		var one int
		if err := db.Pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err == nil {
			t.Fatal("a silent server answered")
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var one int
	err = db.Pool.QueryRow(qctx, `SELECT 1`).Scan(&one)
	if !breaker.IsOpen(err) || kho.ErrorDependency(err) != kho.DependencyPostgreSQL {
		t.Fatalf("with the circuit open: %v (dependency %q), want an open circuit naming postgresql", err, kho.ErrorDependency(err))
	}
}
