package deployer_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/runs"
)

// guardWindow is the lab's guard window: long enough for a lab switch to
// be activated and checked on a loaded machine (under -race, with other
// tests), short enough for the tests that wait for the guard.
const guardWindow = 8 * time.Second

func newGuardEnv(t *testing.T, toml string) *env {
	t.Helper()
	e := newEnv(t, envConfig{
		toml: "[guard]\nwindow = \"" + guardWindow.String() + "\"\n\n" + toml,
		opts: func(o *deployer.Options) { o.GuardGrace = 20 * time.Second },
	})
	// The lab's targets keep the guard's link in the lab.
	e.opts.GuardRoot = e.lab.GuardRoot()
	d, err := deployer.New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	return e
}

func (e *env) runGuarded(ctx context.Context, action nixdeploy.Action, hosts ...string) (*nixdeploy.Deployment, *deployer.Report, error) {
	dep := &nixdeploy.Deployment{Hosts: hosts, Action: action, Requester: "test", Source: nixdeploy.SourceCLI, Guard: true}
	rep, err := runs.New(e.db, e.d).Run(ctx, dep, e.sink)
	return dep, rep, err
}

// waitFor polls cond until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s", what, limit)
		case <-tick.C:
		}
	}
}

// A healthy guarded switch: activated with test, checked, disarmed, then
// made the boot default; after the window the host still runs the new
// system, so no rollback happened.
func TestGuardHealthySwitchDisarms(t *testing.T) {
	e := newGuardEnv(t, `
[[health_checks]]
hosts = ["@lab"]
units = ["prometheus-node-exporter.service"]
commands = ["echo metrics ok"]
`)
	before := e.lab.CurrentSystem("node1")
	dep, rep, err := e.runGuarded(t.Context(), nixdeploy.ActionSwitch, "node1")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, e.sink.text())
	}
	after := e.lab.CurrentSystem("node1")
	if after == before || rep.Hosts[0].After != after {
		t.Fatalf("system %s → %s, report after %s", before, after, rep.Hosts[0].After)
	}
	if got := stepNames(e.steps(dep.ID)); got != "connect mktemp known-hosts lock-flake probe arm-guard nixos-rebuild guard-check make-default verify remove-tmp" {
		t.Errorf("steps = %s", got)
	}
	rebuilds := e.lab.CallsTo("nixos-rebuild")
	if len(rebuilds) != 2 || !strings.Contains(rebuilds[0], "[test]") || !strings.Contains(rebuilds[1], "[boot]") {
		t.Errorf("nixos-rebuild calls, want test then boot:\n%s", strings.Join(rebuilds, "\n"))
	}
	if got := e.lab.BootDefault("node1"); got != after {
		t.Errorf("boot default = %q, want the new system %s", got, after)
	}
	unit := "nixdeploy-guard-" + strconv.FormatInt(dep.ID, 10)
	if e.lab.TimerLoaded("node1", unit) {
		t.Errorf("the guard's timer is still loaded after the disarm")
	}
	run := e.lab.CallsTo("systemd-run")
	if len(run) != 1 || !strings.Contains(run[0], "[--on-active=8s] [--unit="+unit+"]") ||
		!strings.Contains(run[0], "["+e.lab.GuardRoot()+"/"+unit+"/bin/switch-to-configuration] [test]") {
		t.Errorf("systemd-run calls:\n%s", strings.Join(run, "\n"))
	}
	log := e.sink.text()
	for _, want := range []string{"check unit prometheus-node-exporter.service passed", "metrics ok", "check command `echo metrics ok` passed", "guard " + unit + " disarmed"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// Past the window nothing rolls back: the timer was stopped. The
	// event under test is a real-time timer on the target, so the test
	// polls until its deadline has passed.
	deadline := time.Now().Add(guardWindow + time.Second)
	waitFor(t, 2*guardWindow, "past the guard window", func() bool { return time.Now().After(deadline) })
	if got := e.lab.CurrentSystem("node1"); got != after {
		t.Errorf("after the window node1 runs %s, want %s (no rollback)", got, after)
	}
	if c := e.lab.CallsTo("switch-to-configuration"); len(c) != 0 {
		t.Errorf("the guard fired:\n%s", strings.Join(c, "\n"))
	}
	for _, c := range e.lab.Calls() {
		if strings.HasPrefix(c, "BAD ") {
			t.Errorf("stub refused: %s", c)
		}
	}
}

// A switch whose new system refuses the bot's key: the bot cannot get
// back in, does nothing, and the host rolls itself back when the window
// ends; the bot then sees it again and reports the rollback, and verify
// confirms the old system.
func TestGuardRollsBackLostHost(t *testing.T) {
	e := newGuardEnv(t, "")
	e.lab.Set("nixos-rebuild.node1.breakssh", "1")
	before := e.lab.CurrentSystem("node1")
	start := time.Now()
	dep, rep, err := e.runGuarded(t.Context(), nixdeploy.ActionSwitch, "node1")
	if !errors.Is(err, nixdeploy.ErrRolledBack) {
		t.Fatalf("err = %v, want rolled back by the guard\n%s", err, e.sink.text())
	}
	var ge *deployer.GuardError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "rolled back by the guard: node1 could not be reached with its pinned key") {
		t.Errorf("err = %v", err)
	}
	if took := time.Since(start); took < guardWindow {
		t.Errorf("reported after %s, before the window ended", took)
	}
	if got := e.lab.CurrentSystem("node1"); got != before {
		t.Errorf("node1 runs %s, want the old %s", got, before)
	}
	if rep.Hosts[0].After != before {
		t.Errorf("report: after = %q, want %q", rep.Hosts[0].After, before)
	}
	// The rollback was the guard's: its switch-to-configuration test ran
	// on node1 from the saved link, and the bot ran no activation of its
	// own after the test.
	if c := e.lab.CallsTo("switch-to-configuration"); len(c) != 1 || c[0] != "switch-to-configuration node1 [test]" {
		t.Errorf("switch-to-configuration calls:\n%s", strings.Join(c, "\n"))
	}
	if c := e.lab.CallsTo("nixos-rebuild"); len(c) != 1 {
		t.Errorf("nixos-rebuild ran %d times, want only the test:\n%s", len(c), strings.Join(c, "\n"))
	}
	if got := e.lab.BootDefault("node1"); got != "" {
		t.Errorf("boot default changed to %s", got)
	}
	if s := e.stored(dep.ID); s.State != nixdeploy.StateFailed || !strings.Contains(s.Error, "rolled back by the guard") {
		t.Errorf("stored %s: %q", s.State, s.Error)
	}
	log := e.sink.text()
	for _, want := range []string{"cannot reach node1 yet", "rolled back by the guard: node1 runs " + before + " again", "node1 is running " + before} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// A failed health check is never disarmed: the guard rolls the host back,
// and the error names the check.
func TestGuardFailedCheckRollsBack(t *testing.T) {
	e := newGuardEnv(t, `
[[health_checks]]
hosts = ["node1"]
units = ["k3s.service"]
timeout = "5s"
`)
	e.lab.Set("systemctl.node1.unit.k3s.service", "failed")
	before := e.lab.CurrentSystem("node1")
	_, _, err := e.runGuarded(t.Context(), nixdeploy.ActionSwitch, "node1")
	if !errors.Is(err, nixdeploy.ErrRolledBack) || !errors.Is(err, nixdeploy.ErrVerify) {
		t.Fatalf("err = %v, want rolled back after a failed check\n%s", err, e.sink.text())
	}
	if !strings.Contains(err.Error(), "health check failed on node1: unit k3s.service: failed") {
		t.Errorf("err = %v", err)
	}
	if got := e.lab.CurrentSystem("node1"); got != before {
		t.Errorf("node1 runs %s, want the old %s", got, before)
	}
	if c := e.lab.CallsTo("nixos-rebuild"); len(c) != 1 {
		t.Errorf("nixos-rebuild ran %d times, want only the test", len(c))
	}
}

// Without the guard a failed check fails the deployment and nothing rolls
// back.
func TestHealthCheckWithoutGuard(t *testing.T) {
	e := newGuardEnv(t, `
[[health_checks]]
hosts = ["@lab"]
commands = ["exit 4"]
`)
	dep, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	if !errors.Is(err, nixdeploy.ErrVerify) || errors.Is(err, nixdeploy.ErrRolledBack) {
		t.Fatalf("err = %v", err)
	}
	if got := stepNames(e.steps(dep.ID)); got != "connect mktemp known-hosts lock-flake probe nixos-rebuild health remove-tmp" {
		t.Errorf("steps = %s", got)
	}
	if c := e.lab.CallsTo("systemd-run"); len(c) != 0 {
		t.Errorf("an unguarded switch armed a guard: %v", c)
	}
}

// An activation that cuts the network also kills nixos-rebuild's own ssh,
// so the activation step fails; the guard still rolls the host back, and
// the report says so, not just that the step failed.
func TestGuardRollsBackAfterFailedActivation(t *testing.T) {
	e := newGuardEnv(t, "")
	e.lab.Set("nixos-rebuild.node1.breakssh", "1")
	e.lab.Set("nixos-rebuild.node1.dropped", "1")
	before := e.lab.CurrentSystem("node1")
	_, rep, err := e.runGuarded(t.Context(), nixdeploy.ActionSwitch, "node1")
	if !errors.Is(err, nixdeploy.ErrRolledBack) {
		t.Fatalf("err = %v, want rolled back by the guard\n%s", err, e.sink.text())
	}
	if h := rep.Hosts[0]; h.Step != "nixos-rebuild" || h.ExitCode != 255 || !strings.Contains(err.Error(), "step nixos-rebuild failed") {
		t.Errorf("report: step %s, exit %d, err %v", h.Step, h.ExitCode, err)
	}
	if got := e.lab.CurrentSystem("node1"); got != before {
		t.Errorf("node1 runs %s, want the old %s", got, before)
	}
}

// A cancelled guarded deployment does not wait for the guard: its guard
// rolls the host back by itself.
func TestGuardCancelledDoesNotWait(t *testing.T) {
	e := newGuardEnv(t, "")
	e.lab.Set("nixos-rebuild.node1.hang", "1")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := e.runGuarded(ctx, nixdeploy.ActionSwitch, "node1")
		done <- err
	}()
	e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-rebuild", "node1"), 20*time.Second)
	cancel()
	select {
	case err := <-done:
		if errors.Is(err, nixdeploy.ErrRolledBack) {
			t.Errorf("err = %v: the cancel waited for the guard", err)
		}
	case <-time.After(guardWindow + 10*time.Second):
		t.Fatal("the cancelled deployment did not end")
	}
	if !strings.Contains(e.sink.text(), "not waiting for the guard: it rolls node1 back at") {
		t.Errorf("log:\n%s", e.sink.text())
	}
}

// A guarded switch whose build fails activated nothing: the guard is
// disarmed at once and the report is the failed step, not a rollback.
func TestGuardFailedBuildDisarms(t *testing.T) {
	e := newGuardEnv(t, "")
	e.lab.Set("nixos-rebuild.node1.exit", "1")
	dep, _, err := e.runGuarded(t.Context(), nixdeploy.ActionSwitch, "node1")
	if err == nil || errors.Is(err, nixdeploy.ErrRolledBack) {
		t.Fatalf("err = %v, want the failed nixos-rebuild", err)
	}
	unit := "nixdeploy-guard-" + strconv.FormatInt(dep.ID, 10)
	if e.lab.TimerLoaded("node1", unit) {
		t.Error("the guard is still armed")
	}
	if !strings.Contains(e.sink.text(), "nothing to roll back; guard "+unit+" disarmed") {
		t.Errorf("log:\n%s", e.sink.text())
	}
}
