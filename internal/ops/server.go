package ops

import (
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// ServerLimits bound what one client can hold of serve's HTTP server. Slack
// sends a request of a few KB at once and gives up after 3 s, so nothing it
// sends needs more than a second or two of reading; everything slower is an
// attacker holding a connection (issue 15, attack 1).
type ServerLimits struct {
	// ReadHeader bounds the request line and headers.
	ReadHeader time.Duration
	// Read bounds the whole request, body included, from the connection's
	// first byte.
	Read time.Duration
	// Write bounds reading plus handling plus writing the answer. The
	// Slack handlers answer within the 3 s ack; /metrics reads the
	// database.
	Write time.Duration
	// Idle closes a keep-alive connection that sends no next request.
	Idle time.Duration
	// MaxConns caps open connections. A connection over the cap waits in
	// the kernel's backlog until a slot frees, which the timeouts above
	// bound to Read (a slow client) or Idle (a silent one).
	MaxConns int
}

// DefaultServerLimits keep a flood's hold on a slot under Slack's 3 s ack:
// a request waiting for a slot waits at most Read, then gets it.
var DefaultServerLimits = ServerLimits{
	ReadHeader: 2 * time.Second,
	Read:       2500 * time.Millisecond,
	Write:      10 * time.Second,
	Idle:       2500 * time.Millisecond,
	MaxConns:   256,
}

// NewServer returns an http.Server with the limits set, and a listener
// wrapping ln that holds at most l.MaxConns open connections.
func NewServer(h http.Handler, ln net.Listener, l ServerLimits) (*http.Server, net.Listener) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    16 << 10,
		// Refused and timed-out connections are the flood itself; logging
		// each would be the attacker's log amplifier.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if l.MaxConns > 0 {
		ln = &limitListener{Listener: ln, sem: make(chan struct{}, l.MaxConns), done: make(chan struct{})}
	}
	return srv, ln
}

// limitListener is golang.org/x/net/netutil.LimitListener in a few lines,
// to spare a dependency: Accept waits for a free slot, Close of a
// connection frees it.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
