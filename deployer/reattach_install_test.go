package deployer_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
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
	var extra string
	dep := e.detachedRun(t, nixdeploy.ActionInstall, "nixos-anywhere", n, "0", func() {
		extra = e.lab.ExtraFilesDir("node1")
		if extra == "" || !dirExists(filepath.Join(extra, "etc/ssh/ssh_host_ed25519_key")) {
			t.Fatalf("nixos-anywhere runs without its host key in %q", extra)
		}
	})

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
