package ops_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy/internal/ops"
)

var testLimits = ops.ServerLimits{
	ReadHeader: 200 * time.Millisecond,
	Read:       300 * time.Millisecond,
	Write:      time.Second,
	Idle:       300 * time.Millisecond,
	MaxConns:   4,
}

// serveLimited starts a server whose handler reads the whole body, as the
// Slack handlers do, and counts handlers running at once.
func serveLimited(t *testing.T, l ops.ServerLimits) (addr string, peak *atomic.Int32) {
	t.Helper()
	var cur atomic.Int32
	peak = new(atomic.Int32)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "slow", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, lln := ops.NewServer(h, ln, l)
	go func() { _ = srv.Serve(lln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), peak
}

// slowBody opens a connection that sends valid headers and one body byte
// of the hundred it announced, then nothing.
func slowBody(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /slack/commands HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nt")
	return c
}

// closedWithin reads c until the server closes it; it fails when the
// connection is still open after d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server kept the connection open for %v", d)
	}
}

// TestServerClosesSlowAndIdleClients: a client trickling its body and a
// keep-alive connection left idle are both closed by the server.
func TestServerClosesSlowAndIdleClients(t *testing.T) {
	addr, _ := serveLimited(t, testLimits)
	t.Run("slow body", func(t *testing.T) {
		closedWithin(t, slowBody(t, addr), 3*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" || resp.Close {
			t.Fatalf("first request: %d %q close=%v", resp.StatusCode, body, resp.Close)
		}
		closedWithin(t, c, 3*time.Second)
	})
}

// TestServerAnswersDuringFlood: while twice the connection cap of slow
// clients keep arriving, the server never runs more than the cap at once
// and a well-formed request still gets its answer, well within Slack's
// 3 s.
func TestServerAnswersDuringFlood(t *testing.T) {
	addr, peak := serveLimited(t, testLimits)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 * testLimits.MaxConns {
		wg.Go(func() {
			// Each attacker reconnects as soon as it is dropped, a bounded
			// number of times, until the test is done.
			for range 20 {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nt")
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	client := &http.Client{Timeout: 3 * time.Second}
	for i := range 3 {
		resp, err := client.Post("http://"+addr+"/slack/commands", "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatalf("request %d during the flood: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d during the flood: %d %q", i, resp.StatusCode, body)
		}
	}
	if p := peak.Load(); p > int32(testLimits.MaxConns) {
		t.Errorf("%d handlers ran at once, cap %d", p, testLimits.MaxConns)
	}
}

// TestDefaultServerLimits: the shipped limits are all set, and a request
// queued behind a full server waits at most Read for a slot plus its own
// read, inside Slack's 3 s ack.
func TestDefaultServerLimits(t *testing.T) {
	l := ops.DefaultServerLimits
	if l.ReadHeader <= 0 || l.Read <= 0 || l.Write <= 0 || l.Idle <= 0 || l.MaxConns <= 0 {
		t.Fatalf("a limit is off: %+v", l)
	}
	if l.Read >= 3*time.Second || l.Idle >= 3*time.Second || l.ReadHeader > l.Read || l.Write < l.Read {
		t.Errorf("limits do not keep Slack's 3 s ack: %+v", l)
	}
}
