// Package work counts a component's background work, so its owner can
// wait until none is left (bot and runs each keep one).
package work

import (
	"context"
	"sync"
)

// Tracker counts work in flight. The zero value is ready to use.
type Tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

// Add counts one more piece of work.
func (t *Tracker) Add() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
}

// Done ends one piece of work.
func (t *Tracker) Done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
}

// Idle reports whether no work is in flight now.
func (t *Tracker) Idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n == 0
}

// Wait returns once no work is in flight, including work started while it
// waited, or ctx's error when ctx ends first.
func (t *Tracker) Wait(ctx context.Context) error {
	t.mu.Lock()
	idle, n := t.idle, t.n
	t.mu.Unlock()
	if n == 0 {
		return nil
	}
	select {
	case <-idle:
		// New work may have started since; wait for that too.
		return t.Wait(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}
