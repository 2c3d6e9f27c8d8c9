package work

import (
	"context"
	"testing"
)

// TestWaitSeesWorkStartedWhileWaiting: Wait returns only once the work
// that was in flight and the work started before it ended are both done,
// and a cancelled context ends the wait.
func TestWaitSeesWorkStartedWhileWaiting(t *testing.T) {
	var tr Tracker
	if !tr.Idle() || tr.Wait(t.Context()) != nil {
		t.Fatal("a new tracker is not idle")
	}
	tr.Add()
	waited := make(chan error, 1)
	go func() { waited <- tr.Wait(t.Context()) }()
	tr.Add() // started while the first is in flight
	tr.Done()
	if tr.Idle() {
		t.Fatal("idle with work in flight")
	}
	select {
	case err := <-waited:
		t.Fatalf("Wait returned (%v) with work in flight", err)
	default:
	}
	tr.Done()
	if err := <-waited; err != nil || !tr.Idle() {
		t.Fatalf("Wait = %v, idle %v", err, tr.Idle())
	}
	tr.Add()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := tr.Wait(ctx); err != context.Canceled {
		t.Errorf("Wait on a cancelled context = %v", err)
	}
	tr.Done()
}
