// Package idleconn fails a connection that stops moving bytes: a server
// that freezes (a stopped process, a stuck disk, a black-holed network)
// keeps its TCP connection open and its kernel acknowledging, so without a
// deadline a read waits for it forever.
package idleconn

import (
	"context"
	"net"
	"time"
)

// Conn fails a read that waits longer than Idle since the connection last
// moved a byte either way: a request being sent keeps the wait for its
// answer alive.
type Conn struct {
	net.Conn
	Idle time.Duration
}

func (c *Conn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.Idle))
	return c.Conn.Read(p)
}

func (c *Conn) Write(p []byte) (int, error) {
	t := time.Now().Add(c.Idle)
	_ = c.Conn.SetWriteDeadline(t)
	_ = c.Conn.SetReadDeadline(t)
	return c.Conn.Write(p)
}

// Dial returns a dial function whose connections are Conns.
func Dial(d *net.Dialer, idle time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &Conn{Conn: c, Idle: idle}, nil
	}
}
