package schedules_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/runs"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// TestLabNightlyHaltsAtNode2 runs the nightly tick against real sshd
// targets and the real deployer, with nixos-rebuild failing on rk1-node2.
func TestLabNightlyHaltsAtNode2(t *testing.T) {
	sshlab.Require(t)
	loc := berlin(t)
	lab := sshlab.New(t, sshlab.Options{Hosts: rk1})
	cfg := lab.Config(`
[guard]
window = "8s"

[slack]
oncall = ["` + onCall + `"]

[[schedules]]
name = "nightly-rk1"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
hosts = ["@lab"]
action = "switch"
strategy = "rolling"
`)
	lab.Set("nixos-rebuild.rk1-node2.exit", "1")

	r := labRig(t, lab, cfg, loc, nil)
	store, notes := r.db, r.notes
	r.tickAt(t, time.Date(2026, 5, 13, 3, 0, 0, 0, loc))

	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 1 || runs[0].Outcome != schedules.OutcomeFailed {
		t.Fatalf("runs = %+v", runs)
	}
	var got []string
	for _, h := range runs[0].Hosts {
		got = append(got, h.Host+"="+string(h.Outcome))
	}
	if want := []string{"rk1-node1=succeeded", "rk1-node2=failed", "rk1-node3=untouched", "rk1-node4=untouched"}; !slices.Equal(got, want) {
		t.Errorf("run hosts = %v, want %v", got, want)
	}
	for i, want := range []nixdeploy.State{nixdeploy.StateSucceeded, nixdeploy.StateFailed} {
		dep, err := store.Deployment(t.Context(), runs[0].Hosts[i].DeploymentID)
		if err != nil || dep.State != want || dep.Source != nixdeploy.SourceSchedule {
			t.Errorf("deployment of %s = %+v, %v; want %s from the schedule", runs[0].Hosts[i].Host, dep, err, want)
		}
	}
	if calls := lab.CallsTo("nixos-rebuild"); len(calls) != 3 {
		// Guarded: node1's test and boot, node2's test.
		t.Errorf("nixos-rebuild ran %d times, want 3 (node1 test and boot, node2 test):\n%s", len(calls), strings.Join(calls, "\n"))
	}
	for _, h := range []string{"rk1-node3", "rk1-node4"} {
		if n := lab.Target(h).Logins(); n != 0 {
			t.Errorf("%s had %d logins; it must not be touched", h, n)
		}
		for _, c := range lab.Calls() {
			if strings.Contains(c, "#"+h+"]") {
				t.Errorf("a stub ran for %s: %s", h, c)
			}
		}
	}

	sums := notes.all()
	if len(sums) != 1 {
		t.Fatalf("%d summaries, want 1", len(sums))
	}
	text := sums[0].Text()
	for _, want := range []string{"✅ rk1-node1", "❌ rk1-node2", "step nixos-rebuild failed", "⏭ rk1-node3 not touched", "⏭ rk1-node4 not touched", "<@" + onCall + ">"} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q:\n%s", want, text)
		}
	}
}

// labRig runs cfg's schedules, from 02:59 on a fake clock in loc, with the
// real deployer against lab through runs (edit, when set, adjusts the
// deployer's options), and starts it.
func labRig(t *testing.T, lab *sshlab.Lab, cfg *nixdeploy.Config, loc *time.Location, edit func(*deployer.Options)) *rig {
	t.Helper()
	clk := schedules.NewFakeClock(time.Date(2026, 5, 13, 2, 59, 0, 0, loc))
	store := tempDB(t, clk)
	o := deployer.Options{
		Config:         cfg,
		Store:          store,
		HostKeys:       lab.HostKeys(),
		ClientKey:      lab.Client,
		ConnectTimeout: 5 * time.Second,
		GuardRoot:      lab.GuardRoot(),
		Timeouts:       deployer.Timeouts{Command: 20 * time.Second, Rebuild: time.Minute, Verify: 20 * time.Second},
	}
	if edit != nil {
		edit(&o)
	}
	d, err := deployer.New(o)
	if err != nil {
		t.Fatal(err)
	}
	notes := &fakeNotifier{}
	r := &rig{clk: clk, db: store, notes: notes, s: newScheduler(t, cfg, store, runs.New(store, d), notes, clk)}
	r.start(t)
	return r
}
