package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
)

// TestKilledDuringInstall: a `deploy --action install` process is
// SIGKILLed while nixos-anywhere runs (issue 14). The install goes on
// under its supervisor on the runner; the next process reattaches to it
// while it still runs, follows it to its end, runs the rest of the install
// and records it succeeded, with its log stored once. nixos-anywhere is
// never started twice, and the host key it was given is gone from the
// runner once it ended.
func TestKilledDuringInstall(t *testing.T) {
	lab, dbPath, ndp := realLab(t)
	const lines = 2000
	lab.Set("nixos-anywhere.node1.hang", "1")
	lab.Set("nixos-anywhere.node1.hang-exit", "0")
	lab.Set("nixos-anywhere.node1.lines", "2000")
	t.Cleanup(func() { killGroup(lab, "nixos-anywhere", "node1") })
	killed := ndp(context.Background(), "deploy", "--action", "install", "--yes", "--i-understand-this-wipes-disks", "node1")
	var killedOut syncBuffer
	killed.Stdout, killed.Stderr = &killedOut, &killedOut
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killed.Process.Kill() })
	lab.WaitFile(t.Context(), lab.PIDFile("nixos-anywhere", "node1"), time.Minute)
	pollUntil(t, time.Minute, "the install's output", func() bool { return strings.Contains(killedOut.String(), "line 2000 of 2000") })
	killed.Process.Kill()
	killed.Wait()
	extra := lab.ExtraFilesDir("node1")
	if extra == "" {
		t.Fatal("nixos-anywhere was given no extra files")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var next syncBuffer
	restarted := ndp(ctx, "deploy", "node2")
	restarted.Stdout, restarted.Stderr = &next, &next
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, time.Minute, "the reattach", func() bool { return strings.Contains(next.String(), "reattached to nixos-anywhere on the runner") })
	endHang(t, lab, "nixos-anywhere", "node1")
	if err := restarted.Wait(); err != nil {
		t.Fatalf("the next process: %v\n%s", err, next.String())
	}
	if !strings.Contains(next.String(), "deployment 1 (reattached): succeeded") {
		t.Errorf("the killed install was not finished by the next process:\n%s", next.String())
	}
	store, _, err := db.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if d, err := store.Deployment(t.Context(), 1); err != nil || d.State != nixdeploy.StateSucceeded || d.Action != nixdeploy.ActionInstall {
		t.Errorf("the killed install: %s %s (%q), %v; want a succeeded install", d.Action, d.State, d.Error, err)
	}
	checkStepLogOnce(t, store, 1, "nixos-anywhere", lines)
	if n := countCalls(t, lab, "nixos-anywhere", "node1"); n != 1 {
		t.Errorf("nixos-anywhere ran %d times, want once: the reattach must not start it again", n)
	}
	if _, err := os.Stat(extra); !os.IsNotExist(err) {
		t.Errorf("the install's extra files (host key) are still on the runner: %v", err)
	}
}
