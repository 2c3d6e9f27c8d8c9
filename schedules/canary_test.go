package schedules_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/schedules"
)

func canaryNightly(canary string) nixdeploy.Schedule {
	s := nightly()
	s.Strategy = nixdeploy.StrategyCanary
	s.Canary = canary
	return s
}

// The configured canary goes first, guarded; when it passes the rest roll
// in order.
func TestCanaryFirstThenRolls(t *testing.T) {
	loc := berlin(t)
	r := newRig(t, time.Date(2026, 5, 13, 2, 59, 0, 0, loc), fleet(canaryNightly("rk1-node3")))
	r.start(t)
	r.tickAt(t, time.Date(2026, 5, 13, 3, 0, 0, 0, loc))
	if got, want := r.dep.hosts(), []string{"rk1-node3", "rk1-node1", "rk1-node2", "rk1-node4"}; !slices.Equal(got, want) {
		t.Fatalf("deployed %v, want %v", got, want)
	}
	for _, c := range r.dep.calls {
		if !c.req.Guard {
			t.Errorf("%s was deployed without the guard", c.req.Host)
		}
	}
	if runs := r.runs(t, "nightly-rk1"); len(runs) != 1 || runs[0].Outcome != schedules.OutcomeSucceeded {
		t.Fatalf("runs = %+v", runs)
	}
}

// A failing canary (the first host when none is configured) leaves every
// other host untouched, and the summary says so in a sentence.
func TestCanaryFailureTouchesNothingElse(t *testing.T) {
	loc := berlin(t)
	r := newRig(t, time.Date(2026, 5, 13, 2, 59, 0, 0, loc), fleet(canaryNightly("")))
	r.dep.fn = func(_ context.Context, req schedules.HostRequest) (schedules.Result, error) {
		return schedules.Result{DeploymentID: 7, State: nixdeploy.StateFailed, Err: errors.New("rk1-node1 was rolled back by the guard")}, nil
	}
	r.start(t)
	r.tickAt(t, time.Date(2026, 5, 13, 3, 0, 0, 0, loc))
	if got := r.dep.hosts(); !slices.Equal(got, []string{"rk1-node1"}) {
		t.Fatalf("deployed %v, want only the canary", got)
	}
	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 1 || runs[0].Outcome != schedules.OutcomeFailed {
		t.Fatalf("runs = %+v", runs)
	}
	var got []string
	for _, h := range runs[0].Hosts {
		got = append(got, h.Host+"="+string(h.Outcome))
	}
	if want := []string{"rk1-node1=failed", "rk1-node2=untouched", "rk1-node3=untouched", "rk1-node4=untouched"}; !slices.Equal(got, want) {
		t.Errorf("run hosts = %v, want %v", got, want)
	}
	text := r.notes.all()[0].Text()
	for _, want := range []string{
		"failed: The canary rk1-node1 failed, so none of the other 3 hosts was touched.",
		"⏭ rk1-node2 not touched (the canary rk1-node1 failed)",
		"rolled back by the guard",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
}

// TestLabCanaryCheckFails runs a canary night against real sshd targets
// and the real deployer: the canary's health check fails, its guard rolls
// it back, and no other node is contacted or changed.
func TestLabCanaryCheckFails(t *testing.T) {
	sshlab.Require(t)
	loc := berlin(t)
	lab := sshlab.New(t, sshlab.Options{Hosts: rk1})
	cfg := lab.Config(`
[guard]
window = "8s"

[[health_checks]]
hosts = ["@lab"]
units = ["prometheus-node-exporter.service"]
timeout = "5s"

[[schedules]]
name = "nightly-rk1"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
hosts = ["@lab"]
action = "switch"
strategy = "canary"
canary = "rk1-node2"
`)
	lab.Set("systemctl.rk1-node2.unit.prometheus-node-exporter.service", "failed")
	before := map[string]string{}
	for _, h := range rk1 {
		before[h] = lab.CurrentSystem(h)
	}

	r := labRig(t, lab, cfg, loc, func(o *deployer.Options) {
		o.WaitBackoff = 50 * time.Millisecond
		o.GuardGrace = 20 * time.Second
	})
	notes := r.notes
	r.tickAt(t, time.Date(2026, 5, 13, 3, 0, 0, 0, loc))

	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 1 || runs[0].Outcome != schedules.OutcomeFailed {
		t.Fatalf("runs = %+v", runs)
	}
	var got []string
	for _, h := range runs[0].Hosts {
		got = append(got, h.Host+"="+string(h.Outcome))
	}
	if want := []string{"rk1-node2=failed", "rk1-node1=untouched", "rk1-node3=untouched", "rk1-node4=untouched"}; !slices.Equal(got, want) {
		t.Errorf("run hosts = %v, want %v", got, want)
	}
	// The canary ran test only, and its guard brought the old system back.
	if calls := lab.CallsTo("nixos-rebuild"); len(calls) != 1 || !strings.Contains(calls[0], "[test]") || !strings.Contains(calls[0], "#rk1-node2]") {
		t.Errorf("nixos-rebuild calls, want one test of rk1-node2:\n%s", strings.Join(calls, "\n"))
	}
	if c := lab.CallsTo("switch-to-configuration"); len(c) != 1 || c[0] != "switch-to-configuration rk1-node2 [test]" {
		t.Errorf("switch-to-configuration calls (the guard's rollback):\n%s", strings.Join(c, "\n"))
	}
	for _, h := range rk1 {
		if got := lab.CurrentSystem(h); got != before[h] {
			t.Errorf("%s runs %s, want its old %s", h, got, before[h])
		}
		if h == "rk1-node2" {
			continue
		}
		if n := lab.Target(h).Logins(); n != 0 {
			t.Errorf("%s had %d logins; it must not be touched", h, n)
		}
		for _, c := range lab.Calls() {
			if strings.Contains(c, "#"+h+"]") || strings.HasPrefix(c, "systemd-run "+h) || strings.HasPrefix(c, "systemctl "+h) {
				t.Errorf("a stub ran for %s: %s", h, c)
			}
		}
	}
	sums := notes.all()
	if len(sums) != 1 {
		t.Fatalf("%d summaries, want 1", len(sums))
	}
	text := sums[0].Text()
	for _, want := range []string{
		"The canary rk1-node2 failed, so none of the other 3 hosts was touched.",
		"❌ rk1-node2", "rolled back by the guard", "unit prometheus-node-exporter.service: failed",
		"⏭ rk1-node1 not touched (the canary rk1-node2 failed)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
}
