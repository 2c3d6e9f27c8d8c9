package bot_test

import (
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// --guard in chat reaches the deployer as a guarded deployment; without it
// the deployment is not guarded, and a scheduled host's request carries
// the guard through DeployHost.
func TestGuardFlagReachesDeployer(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 4)
	h := newHarness(t, harnessOptions{started: started})
	next := func() nixdeploy.Deployment {
		t.Helper()
		select {
		case d := <-started:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("no deployment started")
		}
		return nixdeploy.Deployment{}
	}

	if got := h.command(alice, "rk1-node1 --guard"); got != "`/nixdeploy switch rk1-node1 --guard`" {
		t.Errorf("ack = %q", got)
	}
	if d := next(); !d.Guard || d.Action != nixdeploy.ActionSwitch {
		t.Errorf("deployment = %+v, want a guarded switch", d)
	}
	h.settle()
	h.command(alice, "switch ganon")
	if d := next(); d.Guard {
		t.Errorf("an unguarded switch reached the deployer guarded: %+v", d)
	}
	h.settle()
	go h.life.DeployHost(t.Context(), nixdeploy.HostRequest{Schedule: "nightly-rk1", Host: "ganon", Action: nixdeploy.ActionSwitch, Guard: true})
	if d := next(); !d.Guard {
		t.Errorf("a scheduled host reached the deployer unguarded: %+v", d)
	}
	h.settle()
}
