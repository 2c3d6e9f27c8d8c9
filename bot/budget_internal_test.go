package bot

import (
	"context"
	"sync"
	"testing"
	"time"
)

// stepClock is a Clock moved by the test; a timer fires when the clock
// reaches it.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []stepTimer
	armed  chan struct{}
}

type stepTimer struct {
	at time.Time
	f  func()
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *stepClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, stepTimer{c.now.Add(d), f})
	select {
	case c.armed <- struct{}{}:
	default:
	}
	return func() bool { return false }
}

func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			due = append(due, t.f)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// TestBudgetRateAndPriority: the shared budget lets Burst calls through at
// once, then one per 60/PerMinute s; a waiting urgent call (a final
// message, an approval) goes before a progress update that was waiting
// first; per-channel limits keep channels apart.
func TestBudgetRateAndPriority(t *testing.T) {
	clk := &stepClock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), armed: make(chan struct{}, 100)}
	r := newBudget(clk, map[string]Limit{
		"chat.update":      {PerMinute: 60, Burst: 2},
		"chat.postMessage": {PerMinute: 60, Burst: 1, PerChannel: true},
	})
	ctx := t.Context()
	for i := range 2 {
		if err := r.wait(ctx, "chat.update", "C1", false); err != nil {
			t.Fatalf("burst call %d: %v", i, err)
		}
	}
	// Not limited: answers at once.
	if err := r.wait(ctx, "chat.postEphemeral", "C1", false); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	go func() {
		if r.wait(ctx, "chat.update", "C2", false) == nil {
			order <- "progress"
		}
	}()
	<-clk.armed // the progress update waits
	go func() {
		if r.wait(ctx, "chat.update", "C1", true) == nil {
			order <- "urgent"
		}
	}()
	<-clk.armed // so does the urgent call
	select {
	case who := <-order:
		t.Fatalf("%s went through with the budget spent", who)
	default:
	}
	// One call's worth of time: the urgent one goes, the progress one
	// keeps waiting for the next.
	clk.fireNext()
	if who := next(t, order); who != "urgent" {
		t.Fatalf("%s went first, want the urgent call", who)
	}
	<-clk.armed // the progress update waits on
	clk.fireNext()
	if who := next(t, order); who != "progress" {
		t.Fatalf("got %s", who)
	}
	if got := clk.Now().Sub(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)); got < 2*time.Second {
		t.Errorf("two calls past the burst after %v, want at least 2 s at 60 a minute", got)
	}

	// chat.postMessage is per channel: C1's call does not spend C2's.
	if err := r.wait(ctx, "chat.postMessage", "C1", true); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.wait(ctx, "chat.postMessage", "C2", true); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a post to C2 waited for C1's budget")
	}

	// A cancelled wait returns at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.wait(cctx, "chat.postMessage", "C1", false); err == nil {
		t.Error("a cancelled wait took a call")
	}
}

// next is the next caller the budget let through.
func next(t *testing.T, order chan string) string {
	t.Helper()
	select {
	case who := <-order:
		return who
	case <-time.After(5 * time.Second):
		t.Fatal("nobody went through")
		return ""
	}
}

// fireNext moves the clock to the earliest timer and fires every timer
// due then.
func (c *stepClock) fireNext() {
	c.mu.Lock()
	var at time.Time
	for _, t := range c.timers {
		if at.IsZero() || t.at.Before(at) {
			at = t.at
		}
	}
	d := at.Sub(c.now)
	c.mu.Unlock()
	c.advance(d)
}
