package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
)

// restart stands for the next start of nixdeploy: a new database handle
// (a new owner; the old one's lease was released) and a new Deployer.
func (e *env) restart(t *testing.T) (*db.DB, *deployer.Deployer) {
	t.Helper()
	store, interrupted, err := db.Open(t.Context(), e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if len(interrupted) > 0 {
		t.Fatalf("Open marked %d deployments interrupted; the one with a running step must be left for the reattach", len(interrupted))
	}
	opts := e.opts
	opts.Store = store
	d, err := deployer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return store, d
}

// detached runs a switch whose nixos-rebuild prints n lines and hangs,
// shuts the "process" down gracefully while it hangs, and returns the
// deployment: the step goes on on the runner.
func (e *env) detached(t *testing.T, n int, exit string) *nixdeploy.Deployment {
	t.Helper()
	return e.detachedRun(t, nixdeploy.ActionSwitch, "nixos-rebuild", n, exit, nil)
}

// detachedRun is detached for action, whose long step runs the stub tool;
// whileRunning, when set, is called once the step printed its lines and
// before the shutdown.
func (e *env) detachedRun(t *testing.T, action nixdeploy.Action, tool string, n int, exit string, whileRunning func()) *nixdeploy.Deployment {
	t.Helper()
	e.lab.Set(tool+".node1.lines", fmt.Sprint(n))
	e.lab.Set(tool+".node1.hang", "1")
	e.lab.Set(tool+".node1.hang-exit", exit)
	t.Cleanup(func() { killStub(t, e.lab, tool, "node1") })
	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan error, 1)
	var dep *nixdeploy.Deployment
	go func() {
		var err error
		dep, _, err = e.run(ctx, action, []string{"node1"})
		done <- err
	}()
	e.lab.WaitFile(t.Context(), e.lab.PIDFile(tool, "node1"), 30*time.Second)
	waitUntil(t, 20*time.Second, "the printed lines", func() bool { return e.sink.has(fmt.Sprintf("line %d of %d", n, n)) })
	if whileRunning != nil {
		whileRunning()
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
	if !e.sink.has("goes on running on the runner") {
		t.Errorf("the shutdown did not say the step goes on:\n%s", e.sink.text())
	}
	e.db.Close()
	return dep
}

// reattach finds the deployment as the next start does and reattaches.
func reattach(t *testing.T, store *db.DB, d *deployer.Deployer, id int64, sink deployer.Sink) (*nixdeploy.Deployment, *nixdeploy.Report, error) {
	t.Helper()
	deps, err := store.Reattachable(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) != 1 || deps[0].ID != id {
		t.Fatalf("reattachable: %+v, want deployment %d", deps, id)
	}
	dep := deps[0]
	if err := store.Adopt(t.Context(), dep.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := d.Reattach(t.Context(), &dep, sink)
	if rep != nil {
		if ferr := store.Finish(t.Context(), dep.ID, dep.State, dep.ExitCode, dep.Error); ferr != nil {
			t.Fatalf("finish: %v", ferr)
		}
	}
	return &dep, rep, err
}

// checkOnce: every "line i of n" is stored once, in order, and the
// whole log is numbered without a gap.
func checkOnce(t *testing.T, store *db.DB, id int64, n int) []nixdeploy.LogLine {
	t.Helper()
	return checkStepOnce(t, store, id, "nixos-rebuild", n)
}

// checkStepOnce is checkOnce for the lines of step.
func checkStepOnce(t *testing.T, store *db.DB, id int64, step string, n int) []nixdeploy.LogLine {
	t.Helper()
	var lines []nixdeploy.LogLine
	if err := store.EachLog(t.Context(), id, func(l nixdeploy.LogLine) error {
		lines = append(lines, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkSeq(t, "stored", lines)
	next := 1
	for _, l := range lines {
		if l.Step == step && strings.HasPrefix(l.Text, "line ") {
			if want := fmt.Sprintf("line %d of %d", next, n); l.Text != want {
				t.Fatalf("stored %q, want %q", l.Text, want)
			}
			next++
		}
	}
	if next != n+1 {
		t.Fatalf("%d lines stored, want %d", next-1, n)
	}
	return lines
}

// TestReattachStillRunning: a graceful shutdown leaves nixos-rebuild
// running; the next start reattaches, follows it to its end, verifies, and
// the deployment succeeds with its log stored once.
func TestReattachStillRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	const n = 5000
	dep := e.detached(t, n, "0")
	store, d := e.restart(t)
	sink := &recSink{}
	type result struct {
		rep *nixdeploy.Report
		err error
		dep *nixdeploy.Deployment
	}
	res := make(chan result, 1)
	go func() {
		dep, rep, err := reattach(t, store, d, dep.ID, sink)
		res <- result{rep, err, dep}
	}()
	waitUntil(t, 20*time.Second, "the reattach", func() bool { return sink.has("reattached to nixos-rebuild") })
	endHang(t, e.lab, "nixos-rebuild", "node1")
	var r result
	select {
	case r = <-res:
	case <-time.After(30 * time.Second):
		t.Fatal("Reattach did not end")
	}
	if r.err != nil || r.rep.State != nixdeploy.StateSucceeded {
		t.Fatalf("reattach: %v (%+v)\n%s", r.err, r.rep, sink.text())
	}
	got, err := store.Deployment(t.Context(), dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != nixdeploy.StateSucceeded {
		t.Errorf("stored state %s (%s)", got.State, got.Error)
	}
	lines := checkOnce(t, store, dep.ID, n)
	var verified, after bool
	for _, l := range lines {
		verified = verified || l.Step == "verify"
		after = after || l.Text == "after the hang"
	}
	if !verified || !after {
		t.Errorf("the rest of the step's log (%v) or of the plan (%v) is missing", after, verified)
	}
	if dir := rebuildRunDir(t, e.lab); dirExists(dir) {
		t.Errorf("the run directory %s is left", dir)
	}
}

// TestReattachEndedWhileDown: the step ends while no bot runs; the next
// start reads its status and the rest of its log, and the deployment ends
// with the step's real exit status.
func TestReattachEndedWhileDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	const n = 3000
	dep := e.detached(t, n, "3")
	dir := rebuildRunDir(t, e.lab)
	endHang(t, e.lab, "nixos-rebuild", "node1")
	waitUntil(t, 20*time.Second, "the step's status", func() bool { return dirExists(filepath.Join(dir, "nixos-rebuild.status")) })
	store, d := e.restart(t)
	sink := &recSink{}
	got, rep, err := reattach(t, store, d, dep.ID, sink)
	var se *deployer.StepError
	if !errors.As(err, &se) || se.Step != "nixos-rebuild" || se.ExitCode != 3 {
		t.Fatalf("err = %v, want nixos-rebuild's exit status 3", err)
	}
	if rep.State != nixdeploy.StateFailed || got.ExitCode != 3 {
		t.Errorf("state %s, exit %d", rep.State, got.ExitCode)
	}
	stored, serr := store.Deployment(t.Context(), dep.ID)
	if serr != nil || stored.State != nixdeploy.StateFailed || stored.ExitCode != 3 {
		t.Errorf("stored %s exit %d (%v)", stored.State, stored.ExitCode, serr)
	}
	lines := checkOnce(t, store, dep.ID, n)
	if lines[len(lines)-1].Stream != nixdeploy.StreamEvent {
		t.Errorf("last line %+v", lines[len(lines)-1])
	}
	found := false
	for _, l := range lines {
		found = found || l.Text == "after the hang"
	}
	if !found {
		t.Error("the lines printed while the bot was down are missing")
	}
	if dirExists(dir) {
		t.Errorf("the run directory %s is left", dir)
	}
}

func dirExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestReattachUnknown: the supervisor itself was SIGKILLed with its step
// while no bot ran (as a reboot of the runner would), so no status was
// written: the reattach cannot learn the end, and the deployment ends
// interrupted with an error that says what is unknown, not failed or
// succeeded.
func TestReattachUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	dep := e.detached(t, 100, "0")
	dir := rebuildRunDir(t, e.lab)
	sup, err := os.ReadFile(filepath.Join(dir, "nixos-rebuild.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscallKill(pidFrom(t, strings.TrimSpace(string(sup)))); err != nil {
		t.Fatal(err)
	}
	killStub(t, e.lab, "nixos-rebuild", "node1")
	store, d := e.restart(t)
	got, rep, err := reattach(t, store, d, dep.ID, &recSink{})
	if !errors.Is(err, deployer.ErrRemoteUnknown) || !strings.Contains(err.Error(), "without writing an exit status") {
		t.Fatalf("err = %v, want the outcome unknown", err)
	}
	if rep == nil || rep.State != nixdeploy.StateInterrupted || got.State != nixdeploy.StateInterrupted {
		t.Fatalf("report %+v, deployment %s; want interrupted", rep, got.State)
	}
	stored, err := store.Deployment(t.Context(), dep.ID)
	if err != nil || stored.State != nixdeploy.StateInterrupted || !strings.Contains(stored.Error, "unknown") {
		t.Errorf("stored %s %q, %v", stored.State, stored.Error, err)
	}
	if dirExists(dir) {
		t.Errorf("the run directory %s is left", dir)
	}
}
