package simfleet_test

import (
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// The simulator answers the drift board as the lab does: a host that runs
// its system from before the flake's revision drifts; a switch brings it in
// line and leaves a reboot pending; a rollback drifts again; a broken
// configuration is unknown, and says it does not evaluate.
func TestDriftBoardAgainstTheFleet(t *testing.T) {
	r := newRig(t, 0)
	read := func() map[string]nixdeploy.HostReading {
		t.Helper()
		rs, err := r.dep.ReadHosts(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]nixdeploy.HostReading{}
		for _, rd := range rs {
			out[rd.Host] = rd
		}
		return out
	}
	rs := read()
	if g := rs["ganon"]; g.Drift != nixdeploy.DriftYes || g.RebootPending || g.Running != r.fleet.CurrentSystem("ganon") || g.Booted != g.Running {
		t.Errorf("ganon at first: %+v", g)
	}
	if b := rs["rk1-node2"]; b.Drift != nixdeploy.DriftUnknown || !strings.Contains(b.Why, "nixosConfigurations.rk1-node2 does not evaluate") || b.Running == "" {
		t.Errorf("broken rk1-node2: %+v", b)
	}

	for _, a := range []nixdeploy.Action{nixdeploy.ActionSwitch, nixdeploy.ActionSwitch} {
		dep := &nixdeploy.Deployment{Hosts: []string{"rk1-node1"}, Action: a, Requester: "test"}
		if _, err := r.life.Run(t.Context(), dep); err != nil {
			t.Fatal(err)
		}
	}
	rs = read()
	if n := rs["rk1-node1"]; n.Drift != nixdeploy.DriftNo || !n.RebootPending || n.Expected != r.fleet.ExpectedSystem("git+file:///dots?rev="+n.Revision, "rk1-node1") || n.Running != n.Expected {
		t.Errorf("rk1-node1 after switches: %+v", n)
	}
	dep := &nixdeploy.Deployment{Hosts: []string{"rk1-node1"}, Action: nixdeploy.ActionRollback, Requester: "test"}
	if _, err := r.life.Run(t.Context(), dep); err != nil {
		t.Fatal(err)
	}
	rs = read()
	if n := rs["rk1-node1"]; n.Drift != nixdeploy.DriftYes || n.Running == n.Expected {
		t.Errorf("rk1-node1 after a rollback: %+v", n)
	}
	for _, c := range r.fleet.Calls() {
		if strings.Contains(c, "not simulated") {
			t.Errorf("unsimulated call: %s", c)
		}
	}
}
