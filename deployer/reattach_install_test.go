package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
)

// TestReattachInstall: the bot goes away (a shutdown detaches it) while
// nixos-anywhere runs. The install goes on under its supervisor; when it
// ends, with no bot connected, the host key it was given leaves the
// runner; the next start reattaches, reads the step's end and the rest of
// its log, and runs the rest of the install (the wait for the pinned key,
// the switch, verify) without starting nixos-anywhere again. The log is
// stored once and the run directory is removed.
func TestReattachInstall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	const n = 3000
	e.lab.Set("nixos-anywhere.node1.lines", fmt.Sprint(n))
	e.lab.Set("nixos-anywhere.node1.hang", "1")
	e.lab.Set("nixos-anywhere.node1.hang-exit", "0")
	t.Cleanup(func() { killStub(t, e.lab, "nixos-anywhere", "node1") })

	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan error, 1)
	var dep *nixdeploy.Deployment
	go func() {
		var err error
		dep, _, err = e.run(ctx, nixdeploy.ActionInstall, []string{"node1"})
		done <- err
	}()
	e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-anywhere", "node1"), 30*time.Second)
	waitUntil(t, 20*time.Second, "the printed lines", func() bool { return e.sink.has(fmt.Sprintf("line %d of %d", n, n)) })
	extra := e.lab.ExtraFilesDir("node1")
	if extra == "" || !dirExists(filepath.Join(extra, "etc/ssh/ssh_host_ed25519_key")) {
		t.Fatalf("nixos-anywhere runs without its host key in %q", extra)
	}
	cancel(nixdeploy.ErrShutdown)
	select {
	case err := <-done:
		if !errors.Is(err, deployer.ErrDetached) {
			t.Fatalf("err = %v, want detached", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not detach")
	}
	e.db.Close()

	// The install ends while no bot runs: its supervisor removes the key.
	endHang(t, e.lab, "nixos-anywhere", "node1")
	waitUntil(t, 20*time.Second, "the host key to leave the runner", func() bool { return !dirExists(extra) })

	store, d := e.restart(t)
	sink := &recSink{}
	got, rep, err := reattach(t, store, d, dep.ID, sink)
	if err != nil || rep.State != nixdeploy.StateSucceeded {
		t.Fatalf("reattach: %v (%+v)\n%s", err, rep, sink.text())
	}
	if stored, err := store.Deployment(t.Context(), got.ID); err != nil || stored.State != nixdeploy.StateSucceeded {
		t.Errorf("stored %s (%q), %v", stored.State, stored.Error, err)
	}
	checkStepOnce(t, store, dep.ID, "nixos-anywhere", n)
	if c := e.lab.CallsTo("nixos-anywhere"); len(c) != 1 {
		t.Errorf("nixos-anywhere ran %d times, want once: the reattach must not start it again", len(c))
	}
	if c := e.lab.CallsTo("nixos-rebuild"); len(c) != 1 {
		t.Errorf("nixos-rebuild ran %d times after the reattach, want once (the rest of the install)", len(c))
	}
	if dir := rebuildRunDir(t, e.lab); dirExists(dir) {
		t.Errorf("the run directory %s is left", dir)
	}
}
