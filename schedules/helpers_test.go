package schedules_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/schedules"
)

const onCall = "U0ONCALL1"

var rk1 = []string{"rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"}

// fleet is the plan's fleet with the given schedules.
func fleet(scheds ...nixdeploy.Schedule) *nixdeploy.Config {
	c := &nixdeploy.Config{
		Hosts: []nixdeploy.Host{{Name: "ganon", Tags: []string{"desktop"}}},
		Slack: nixdeploy.Slack{OnCall: []string{onCall}},
	}
	for _, h := range rk1 {
		c.Hosts = append(c.Hosts, nixdeploy.Host{Name: h, Tags: []string{"rk1"}})
	}
	c.Schedules = scheds
	return c
}

// nightly is the example fleet's nightly-rk1 schedule with config defaults.
func nightly() nixdeploy.Schedule {
	return nixdeploy.Schedule{
		Name:          "nightly-rk1",
		Cron:          "0 3 * * *",
		TimeZone:      "Europe/Berlin",
		Hosts:         []string{"@rk1"},
		Action:        nixdeploy.ActionSwitch,
		Strategy:      "rolling",
		Parallel:      2,
		BusyWait:      nixdeploy.Duration{Duration: 10 * time.Minute},
		Missed:        "skip",
		CatchUpWindow: nixdeploy.Duration{Duration: 2 * time.Hour},
	}
}

func berlin(t testing.TB) *time.Location { return zone(t, "Europe/Berlin") }

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s not available: %v", name, err)
	}
	return loc
}

// openDB opens a real database at path whose own timestamps follow clk.
func openDB(t testing.TB, path string, clk *schedules.FakeClock) *db.DB {
	t.Helper()
	d, _, err := db.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	d.Now = clk.Now
	t.Cleanup(func() { d.Close() })
	return d
}

func tempDB(t testing.TB, clk *schedules.FakeClock) *db.DB {
	return openDB(t, filepath.Join(t.TempDir(), "nixdeploy.db"), clk)
}

type deployCall struct {
	req schedules.HostRequest
	at  time.Time
}

// fakeDeployer records calls and answers with fn, or success.
type fakeDeployer struct {
	clk    *schedules.FakeClock
	fn     func(ctx context.Context, req schedules.HostRequest) (schedules.Result, error)
	nextID atomic.Int64
	mu     sync.Mutex
	calls  []deployCall
}

func (f *fakeDeployer) DeployHost(ctx context.Context, req schedules.HostRequest) (schedules.Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, deployCall{req, f.clk.Now()})
	f.mu.Unlock()
	if f.fn != nil {
		return f.fn(ctx, req)
	}
	return f.ok(), nil
}

func (f *fakeDeployer) ok() schedules.Result {
	id := 100 + f.nextID.Add(1)
	return schedules.Result{DeploymentID: id, State: nixdeploy.StateSucceeded, Link: fmt.Sprintf("https://fleet.slack.example/archives/C0FLEET01/p%d", id)}
}

func (f *fakeDeployer) hosts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = c.req.Host
	}
	return out
}

func (f *fakeDeployer) callsOf(host string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Time
	for _, c := range f.calls {
		if c.req.Host == host {
			out = append(out, c.at)
		}
	}
	return out
}

type fakeNotifier struct {
	mu    sync.Mutex
	sums  []schedules.Summary
	waits []schedules.Wait
}

func (n *fakeNotifier) Waiting(_ context.Context, w schedules.Wait) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.waits = append(n.waits, w)
	return nil
}

func (n *fakeNotifier) allWaits() []schedules.Wait {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]schedules.Wait(nil), n.waits...)
}

func (n *fakeNotifier) Summary(_ context.Context, s schedules.Summary) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sums = append(n.sums, s)
	return nil
}

func (n *fakeNotifier) all() []schedules.Summary {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]schedules.Summary(nil), n.sums...)
}

type rig struct {
	clk   *schedules.FakeClock
	db    *db.DB
	dep   *fakeDeployer
	notes *fakeNotifier
	s     *schedules.Scheduler
}

// newRig builds a Scheduler over a real database, a fake deployer and a
// fake clock reading now. It is stopped when the test ends.
func newRig(t *testing.T, now time.Time, cfg *nixdeploy.Config) *rig {
	t.Helper()
	clk := schedules.NewFakeClock(now)
	r := &rig{clk: clk, db: tempDB(t, clk), dep: &fakeDeployer{clk: clk}, notes: &fakeNotifier{}}
	r.s = newScheduler(t, cfg, r.db, r.dep, r.notes, clk)
	return r
}

func newScheduler(t *testing.T, cfg *nixdeploy.Config, store schedules.Store, dep schedules.Deployer, n schedules.Notifier, clk schedules.Clock) *schedules.Scheduler {
	t.Helper()
	s, err := schedules.New(schedules.Options{Config: cfg, Store: store, Deployer: dep, Notifier: n, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// blockUntil waits (in real time, bounded) for n pending timers on clk.
func blockUntil(t testing.TB, clk *schedules.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := clk.BlockUntil(ctx, n); err != nil {
		t.Fatalf("waiting for %d timers on the fake clock: %v", n, err)
	}
}

// start starts the scheduler and waits for its timer to be armed.
func (r *rig) start(t *testing.T) {
	t.Helper()
	if err := r.s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	blockUntil(t, r.clk, 1)
}

// tickAt moves the clock to at and waits until the timer loop has handled
// it (re-armed) and every run it started has ended.
func (r *rig) tickAt(t *testing.T, at time.Time) {
	t.Helper()
	r.clk.Set(at)
	blockUntil(t, r.clk, 1)
	r.s.Wait()
}

func (r *rig) runs(t *testing.T, name string) []nixdeploy.ScheduleRun {
	t.Helper()
	runs, err := r.db.ScheduleRuns(t.Context(), name, 100)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// drive moves the clock from timer to timer until ctx ends (the work under
// test is done) — the fake-clock way to let backoffs elapse.
func drive(ctx context.Context, clk *schedules.FakeClock) {
	for ctx.Err() == nil && clk.BlockUntil(ctx, 1) == nil {
		clk.AdvanceToNext()
	}
}
