package schedules_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// TestRollingHaltsAtFirstFailure: a nightly tick where rk1-node2 does not
// come back healthy. node1 is rebuilt, node2 fails, node3 and node4 are
// never called; the summary says so, and the database has one run with
// four host outcomes.
func TestRollingHaltsAtFirstFailure(t *testing.T) {
	loc := berlin(t)
	tests := []struct {
		name   string
		node2  func(f *fakeDeployer) (schedules.Result, error)
		detail string
	}{
		{"deployment failed", func(f *fakeDeployer) (schedules.Result, error) {
			res := f.ok()
			res.State, res.Err = nixdeploy.StateFailed, errors.New("nixos-rebuild switch exited 1")
			return res, nil
		}, "nixos-rebuild switch exited 1"},
		{"switched but unverifiable", func(f *fakeDeployer) (schedules.Result, error) {
			res := f.ok()
			res.Err = errors.New("verify: /run/current-system unchanged")
			return res, nil
		}, "verify: /run/current-system unchanged"},
		{"no success reported", func(f *fakeDeployer) (schedules.Result, error) {
			res := f.ok()
			res.State = nixdeploy.StateInterrupted
			return res, nil
		}, "deployment ended interrupted"},
		{"deployer error", func(f *fakeDeployer) (schedules.Result, error) {
			return schedules.Result{}, errors.New("dial rk1-node2: connection refused")
		}, "dial rk1-node2: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, time.Date(2026, 5, 13, 2, 59, 0, 0, loc), fleet(nightly()))
			r.dep.fn = func(_ context.Context, req schedules.HostRequest) (schedules.Result, error) {
				if req.Host == "rk1-node2" {
					return tt.node2(r.dep)
				}
				return r.dep.ok(), nil
			}
			r.start(t)
			r.tickAt(t, time.Date(2026, 5, 13, 3, 0, 0, 0, loc))

			if got, want := r.dep.hosts(), []string{"rk1-node1", "rk1-node2"}; !slices.Equal(got, want) {
				t.Fatalf("deployed %v, want %v (node3 and node4 untouched)", got, want)
			}
			sums := r.notes.all()
			if len(sums) != 1 {
				t.Fatalf("%d summaries, want 1", len(sums))
			}
			text := sums[0].Text()
			lines := strings.Split(text, "\n")
			wantPrefixes := []string{
				"❌ *nightly-rk1* (switch) failed: halted: rk1-node2 failed (run #1, cron 2026-05-13 03:00 CEST",
				"✅ rk1-node1 0s <https://fleet.slack.example/archives/C0FLEET01/p101|deployment #101>",
				"❌ rk1-node2 0s <https://fleet.slack.example/archives/C0FLEET01/p102|deployment #102>: " + tt.detail,
				"⏭ rk1-node3 not touched",
				"⏭ rk1-node4 not touched",
				"<@" + onCall + ">",
			}
			if tt.name == "deployer error" {
				wantPrefixes[2] = "❌ rk1-node2 0s: " + tt.detail
			}
			if len(lines) != len(wantPrefixes) {
				t.Fatalf("summary has %d lines, want %d:\n%s", len(lines), len(wantPrefixes), text)
			}
			for i, want := range wantPrefixes {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("summary line %d = %q, want prefix %q", i, lines[i], want)
				}
			}

			runs := r.runs(t, "nightly-rk1")
			if len(runs) != 1 {
				t.Fatalf("%d runs, want 1: %+v", len(runs), runs)
			}
			run := runs[0]
			if run.Outcome != schedules.OutcomeFailed || run.Trigger != schedules.TriggerCron {
				t.Errorf("run = %s/%s, want failed/cron", run.Outcome, run.Trigger)
			}
			var got []string
			for _, h := range run.Hosts {
				got = append(got, h.Host+"="+string(h.Outcome))
			}
			want := []string{"rk1-node1=succeeded", "rk1-node2=failed", "rk1-node3=untouched", "rk1-node4=untouched"}
			if !slices.Equal(got, want) {
				t.Errorf("run hosts = %v, want %v", got, want)
			}
		})
	}
}

// TestParallelBound: with parallel = 2, never more than two deploys are in
// flight, and all four hosts run.
func TestParallelBound(t *testing.T) {
	sc := nightly()
	sc.Strategy, sc.Parallel = "parallel", 2
	r := newRig(t, time.Date(2026, 5, 13, 12, 0, 0, 0, berlin(t)), fleet(sc))
	var inFlight, peak atomic.Int32
	started := make(chan string, len(rk1))
	release := make(chan struct{})
	r.dep.fn = func(ctx context.Context, req schedules.HostRequest) (schedules.Result, error) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		started <- req.Host
		<-release
		inFlight.Add(-1)
		return r.dep.ok(), nil
	}
	if _, err := r.s.RunNow(t.Context(), "nightly-rk1", "U0ALICE01"); err != nil {
		t.Fatal(err)
	}
	wait := func() string {
		t.Helper()
		select {
		case h := <-started:
			return h
		case <-time.After(5 * time.Second):
			t.Fatal("no deploy started")
			return ""
		}
	}
	var order []string
	order = append(order, wait(), wait())
	// Each release lets exactly one more host in.
	for range 2 {
		release <- struct{}{}
		order = append(order, wait())
	}
	release <- struct{}{}
	release <- struct{}{}
	r.s.Wait()

	if p := peak.Load(); p != 2 {
		t.Errorf("peak in flight = %d, want 2", p)
	}
	slices.Sort(order)
	if !slices.Equal(order, rk1) {
		t.Errorf("deployed %v, want all of %v", order, rk1)
	}
	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 1 || runs[0].Outcome != schedules.OutcomeSucceeded || len(runs[0].Hosts) != 4 || runs[0].Trigger != schedules.TriggerManual {
		t.Fatalf("runs = %+v", runs)
	}
	if sums := r.notes.all(); len(sums) != 1 || strings.Count(sums[0].Text(), "✅") != 5 || strings.Contains(sums[0].Text(), "<@"+onCall) {
		t.Errorf("summary:\n%s", sums[0].Text())
	}
}

// TestBusyHost: a busy or locked host is retried with backoff on the clock
// up to BusyWait, then skipped and reported, and the run goes on.
func TestBusyHost(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		freeAfter int // attempts until node2 is free; 0: never
		want      string
		waited    time.Duration
	}{
		{"manual deploy in flight", fmt.Errorf("rk1-node2: %w", nixdeploy.ErrHostBusy), 0, "skipped", 10 * time.Minute},
		{"manual lock", fmt.Errorf("rk1-node2: %w by U0BOB0001", nixdeploy.ErrLocked), 0, "skipped", 10 * time.Minute},
		{"frees up", fmt.Errorf("rk1-node2: %w", nixdeploy.ErrHostBusy), 3, "succeeded", 105 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, time.Date(2026, 5, 13, 12, 0, 0, 0, berlin(t)), fleet(nightly()))
			attempts := 0
			r.dep.fn = func(_ context.Context, req schedules.HostRequest) (schedules.Result, error) {
				if req.Host == "rk1-node2" {
					attempts++
					if tt.freeAfter == 0 || attempts <= tt.freeAfter {
						return schedules.Result{}, tt.err
					}
				}
				return r.dep.ok(), nil
			}
			if _, err := r.s.RunNow(t.Context(), "nightly-rk1", "U0ALICE01"); err != nil {
				t.Fatal(err)
			}
			ctx, done := context.WithCancel(t.Context())
			go func() { r.s.Wait(); done() }()
			drive(ctx, r.clk)
			r.s.Wait()

			calls := r.dep.callsOf("rk1-node2")
			if waited := calls[len(calls)-1].Sub(calls[0]); waited != tt.waited {
				t.Errorf("node2 tried for %s (%d attempts), want %s", waited, len(calls), tt.waited)
			}
			if got := r.dep.hosts(); !slices.Contains(got, "rk1-node3") || !slices.Contains(got, "rk1-node4") {
				t.Errorf("deployed %v: the run did not go on after node2", got)
			}
			if n3 := r.dep.callsOf("rk1-node3"); n3[0].Before(calls[len(calls)-1]) {
				t.Errorf("node3 started at %s, before node2 was given up at %s", n3[0], calls[len(calls)-1])
			}
			run := r.runs(t, "nightly-rk1")[0]
			if run.Outcome != schedules.OutcomeSucceeded || run.Hosts[1].Host != "rk1-node2" || string(run.Hosts[1].Outcome) != tt.want {
				t.Errorf("run = %+v", run)
			}
			text := r.notes.all()[0].Text()
			if busyLine := "⏭ rk1-node2 busy, skipped (busy for 10m0s: rk1-node2: "; (tt.want == "skipped") != strings.Contains(text, busyLine) {
				t.Errorf("summary (want %s):\n%s", tt.want, text)
			}
			// The channel heard once, at the first refusal, that the run waits.
			waits := r.notes.allWaits()
			if len(waits) != 1 || waits[0].Host != "rk1-node2" || !waits[0].Until.Equal(calls[0].Add(10*time.Minute)) {
				t.Fatalf("wait notices %+v, want one for rk1-node2 until %s", waits, calls[0].Add(10*time.Minute))
			}
			if got, want := waits[0].Text(), ":hourglass: nightly-rk1 is waiting for rk1-node2 until "+calls[0].Add(10*time.Minute).UTC().Format("15:04")+" UTC, then skips it: rk1-node2: "; !strings.HasPrefix(got, want) {
				t.Errorf("notice %q, want it to start with %q", got, want)
			}
		})
	}
}

// TestOverlapSkip: a tick while the previous run of the schedule is still
// going is skipped, recorded and reported.
func TestOverlapSkip(t *testing.T) {
	loc := berlin(t)
	r := newRig(t, time.Date(2026, 5, 13, 2, 59, 0, 0, loc), fleet(nightly()))
	started, release := make(chan struct{}, 1), make(chan struct{})
	r.dep.fn = func(_ context.Context, req schedules.HostRequest) (schedules.Result, error) {
		if req.Host == "rk1-node1" && req.RunID == 1 {
			started <- struct{}{}
			<-release
		}
		return r.dep.ok(), nil
	}
	r.start(t)
	r.clk.Set(time.Date(2026, 5, 13, 3, 0, 0, 0, loc))
	<-started
	blockUntil(t, r.clk, 1)
	// The run is stuck on node1 for a day; the next night's tick arrives.
	r.clk.Set(time.Date(2026, 5, 14, 3, 0, 0, 0, loc))
	blockUntil(t, r.clk, 1)

	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2: %+v", len(runs), runs)
	}
	skip := runs[0]
	if skip.Outcome != schedules.OutcomeSkipped || skip.Trigger != schedules.TriggerCron ||
		!skip.ScheduledAt.Equal(time.Date(2026, 5, 14, 3, 0, 0, 0, loc)) || skip.Detail != "the previous run #1 was still going" {
		t.Errorf("skip = %+v", skip)
	}
	if runs[1].Outcome != schedules.OutcomeRunning {
		t.Errorf("first run = %+v, want still running", runs[1])
	}
	list, err := r.s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if list[0].RunningID != 1 || list[0].Last == nil || list[0].Last.Outcome != schedules.OutcomeSkipped {
		t.Errorf("list = %+v", list[0])
	}
	close(release)
	r.s.Wait()
	sums := r.notes.all()
	if len(sums) != 2 || !strings.HasPrefix(sums[0].Text(), "⏭ *nightly-rk1* (switch) skipped: the previous run #1 was still going (run #2, cron 2026-05-14 03:00 CEST)") {
		t.Errorf("summaries: %+v", sums)
	}
	if got := r.runs(t, "nightly-rk1")[1].Outcome; got != schedules.OutcomeSucceeded {
		t.Errorf("first run ended %s", got)
	}
}

// TestRunNow: a manual run uses the same hosts and rules, and a second one
// while the first is going is refused.
func TestRunNow(t *testing.T) {
	r := newRig(t, time.Date(2026, 5, 13, 12, 0, 0, 0, berlin(t)), fleet(nightly()))
	started, release := make(chan struct{}, 1), make(chan struct{})
	r.dep.fn = func(_ context.Context, req schedules.HostRequest) (schedules.Result, error) {
		if req.Host == "rk1-node1" && req.RunID == 1 {
			started <- struct{}{}
			<-release
		}
		return r.dep.ok(), nil
	}
	ctx := t.Context()
	id, err := r.s.RunNow(ctx, "nightly-rk1", "U0ALICE01")
	if err != nil || id != 1 {
		t.Fatalf("RunNow = %d, %v", id, err)
	}
	<-started
	if _, err := r.s.RunNow(ctx, "nightly-rk1", "U0BOB0001"); !errors.Is(err, schedules.ErrRunning) {
		t.Errorf("second RunNow error = %v, want ErrRunning", err)
	}
	if _, err := r.s.RunNow(ctx, "nightly-rk2", "U0BOB0001"); !errors.Is(err, schedules.ErrUnknownSchedule) || !errors.Is(err, nixdeploy.ErrNotFound) {
		t.Errorf("unknown schedule error = %v", err)
	}
	close(release)
	r.s.Wait()
	if id, err := r.s.RunNow(ctx, "nightly-rk1", "U0BOB0001"); err != nil || id != 2 {
		t.Errorf("RunNow after the first ended = %d, %v", id, err)
	}
	r.s.Wait()

	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 2 || runs[1].Trigger != schedules.TriggerManual || runs[1].Outcome != schedules.OutcomeSucceeded {
		t.Errorf("runs = %+v", runs)
	}
	if got := r.dep.hosts(); len(got) != 8 || !slices.Equal(got[:4], rk1) {
		t.Errorf("deployed %v", got)
	}
	if s := r.notes.all()[0]; s.By != "U0ALICE01" || !strings.Contains(s.Text(), "started by <@U0ALICE01>") {
		t.Errorf("summary:\n%s", s.Text())
	}
}

// TestPauseSurvivesRestart: pause, restart on the same database, and the
// schedule does not fire until resumed.
func TestPauseSurvivesRestart(t *testing.T) {
	loc := berlin(t)
	path := filepath.Join(t.TempDir(), "nixdeploy.db")
	clk := schedules.NewFakeClock(time.Date(2026, 5, 13, 2, 0, 0, 0, loc))
	dep, notes := &fakeDeployer{clk: clk}, &fakeNotifier{}
	ctx := t.Context()

	d1 := openDB(t, path, clk)
	s1 := newScheduler(t, fleet(nightly()), d1, dep, notes, clk)
	if err := s1.Pause(ctx, "nightly-rk1", "U0ALICE01"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Pause(ctx, "nightly", "U0ALICE01"); !errors.Is(err, schedules.ErrUnknownSchedule) {
		t.Errorf("pause of an unknown schedule: %v", err)
	}
	s1.Stop()
	d1.Close()

	d2 := openDB(t, path, clk)
	r := &rig{clk: clk, db: d2, dep: dep, notes: notes, s: newScheduler(t, fleet(nightly()), d2, dep, notes, clk)}
	r.start(t)
	r.tickAt(t, time.Date(2026, 5, 13, 3, 0, 0, 0, loc))
	if got := dep.hosts(); len(got) != 0 {
		t.Fatalf("paused schedule deployed %v", got)
	}
	if runs := r.runs(t, "nightly-rk1"); len(runs) != 0 {
		t.Fatalf("paused schedule recorded runs %+v", runs)
	}
	list, err := r.s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := list[0]; !st.Paused || st.PausedBy != "U0ALICE01" || !st.Next.IsZero() || st.Last != nil {
		t.Errorf("status = %+v", st)
	}

	r.clk.Set(time.Date(2026, 5, 13, 12, 0, 0, 0, loc))
	blockUntil(t, r.clk, 1)
	if err := r.s.Resume(ctx, "nightly-rk1", "U0BOB0001"); err != nil {
		t.Fatal(err)
	}
	r.tickAt(t, time.Date(2026, 5, 14, 3, 0, 0, 0, loc))
	if got := dep.hosts(); !slices.Equal(got, rk1) {
		t.Errorf("resumed schedule deployed %v", got)
	}
	trail, err := d2.AuditTrail(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range trail {
		kinds = append(kinds, e.Actor+" "+e.Kind)
	}
	if want := []string{"U0ALICE01 schedule.pause", "U0BOB0001 schedule.resume"}; !slices.Equal(kinds, want) {
		t.Errorf("audit = %v, want %v", kinds, want)
	}
}

// TestMissedRuns: nixdeploy was down at 03:00. With missed = skip the tick
// is recorded as skipped; with catch-up it runs once if the restart is
// within the window, else it is skipped too.
func TestMissedRuns(t *testing.T) {
	loc := berlin(t)
	day := func(d, h, m int) time.Time { return time.Date(2026, 5, d, h, m, 0, 0, loc) }
	tests := []struct {
		name    string
		missed  string
		restart time.Time
		want    nixdeploy.Outcome // outcome of the new row, "" for none
		trigger string
		detail  string
	}{
		{"skip", "skip", day(14, 4, 0), schedules.OutcomeSkipped, schedules.TriggerCron, "nixdeploy was down at 2026-05-14 03:00 CEST"},
		{"catch-up inside the window", "catch-up", day(14, 4, 30), schedules.OutcomeSucceeded, schedules.TriggerCatchUp, ""},
		{"catch-up outside the window", "catch-up", day(14, 5, 30), schedules.OutcomeSkipped, schedules.TriggerCron,
			"nixdeploy was down at 2026-05-14 03:00 CEST; too late to catch up (window 2h0m0s)"},
		{"several missed, caught up once", "catch-up", day(16, 3, 30), schedules.OutcomeSucceeded, schedules.TriggerCatchUp, ""},
		{"several missed, skipped", "skip", day(16, 3, 30), schedules.OutcomeSkipped, schedules.TriggerCron,
			"missed 3 runs while nixdeploy was down, the latest at 2026-05-16 03:00 CEST"},
		{"nothing missed", "skip", day(14, 2, 30), "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := nightly()
			sc.Missed = tt.missed
			r := newRig(t, tt.restart, fleet(sc))
			last := nixdeploy.ScheduleRun{Schedule: "nightly-rk1", Trigger: schedules.TriggerCron, ScheduledAt: day(13, 3, 0),
				StartedAt: day(13, 3, 0), EndedAt: day(13, 3, 20), Outcome: schedules.OutcomeSucceeded}
			if err := r.db.StartScheduleRun(t.Context(), &last); err != nil {
				t.Fatal(err)
			}
			r.start(t)
			r.s.Wait()

			runs := r.runs(t, "nightly-rk1")
			if tt.want == "" {
				if len(runs) != 1 || len(r.dep.hosts()) != 0 {
					t.Fatalf("runs %+v, deploys %v; want nothing new", runs, r.dep.hosts())
				}
				return
			}
			if len(runs) != 2 {
				t.Fatalf("%d runs, want 2: %+v", len(runs), runs)
			}
			got := runs[0]
			if got.Outcome != tt.want || got.Trigger != tt.trigger || got.Detail != tt.detail {
				t.Errorf("new run = %s/%s %q, want %s/%s %q", got.Outcome, got.Trigger, got.Detail, tt.want, tt.trigger, tt.detail)
			}
			if at := got.ScheduledAt.In(loc); at.Hour() != 3 || at.Day() != tt.restart.Day() {
				t.Errorf("new run scheduled at %s, want 03:00 on the restart day", at)
			}
			wantDeploys := 0
			if tt.want == schedules.OutcomeSucceeded {
				wantDeploys = 4
			}
			if n := len(r.dep.hosts()); n != wantDeploys {
				t.Errorf("%d deploys, want %d", n, wantDeploys)
			}
			list, err := r.s.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if list[0].Last == nil || list[0].Last.Outcome != tt.want {
				t.Errorf("list shows last run %+v", list[0].Last)
			}
		})
	}
}

// TestLateTick: a tick noticed long after its time (a suspended machine)
// follows the missed policy instead of running late unasked.
func TestLateTick(t *testing.T) {
	loc := berlin(t)
	r := newRig(t, time.Date(2026, 5, 13, 2, 59, 0, 0, loc), fleet(nightly()))
	r.start(t)
	r.tickAt(t, time.Date(2026, 5, 13, 3, 30, 0, 0, loc))
	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 1 || runs[0].Outcome != schedules.OutcomeSkipped || len(r.dep.hosts()) != 0 {
		t.Fatalf("runs %+v, deploys %v; want one recorded skip", runs, r.dep.hosts())
	}
}

// TestRestartInterruptsRunningRun: a run a previous process left running is
// marked interrupted, and does not count as a missed tick.
func TestRestartInterruptsRunningRun(t *testing.T) {
	loc := berlin(t)
	r := newRig(t, time.Date(2026, 5, 13, 3, 30, 0, 0, loc), fleet(nightly()))
	stale := nixdeploy.ScheduleRun{Schedule: "nightly-rk1", Trigger: schedules.TriggerCron, ScheduledAt: time.Date(2026, 5, 13, 3, 0, 0, 0, loc)}
	if err := r.db.StartScheduleRun(t.Context(), &stale); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 1 || runs[0].Outcome != schedules.OutcomeInterrupted {
		t.Fatalf("runs = %+v", runs)
	}
	if _, err := r.s.RunNow(t.Context(), "nightly-rk1", "U0ALICE01"); err != nil {
		t.Errorf("RunNow after an interrupted run: %v", err)
	}
}

// TestStopInterruptsRun: Stop cancels a run in flight; it records itself as
// interrupted, leaves the remaining hosts untouched and says so.
func TestStopInterruptsRun(t *testing.T) {
	r := newRig(t, time.Date(2026, 5, 13, 12, 0, 0, 0, berlin(t)), fleet(nightly()))
	started := make(chan struct{}, 1)
	r.dep.fn = func(ctx context.Context, req schedules.HostRequest) (schedules.Result, error) {
		if req.Host == "rk1-node2" {
			started <- struct{}{}
			<-ctx.Done()
			return schedules.Result{DeploymentID: 7, State: nixdeploy.StateCancelled}, ctx.Err()
		}
		return r.dep.ok(), nil
	}
	if _, err := r.s.RunNow(t.Context(), "nightly-rk1", "U0ALICE01"); err != nil {
		t.Fatal(err)
	}
	<-started
	r.s.Stop()
	run := r.runs(t, "nightly-rk1")[0]
	var got []string
	for _, h := range run.Hosts {
		got = append(got, string(h.Outcome))
	}
	if run.Outcome != schedules.OutcomeInterrupted || !slices.Equal(got, []string{"succeeded", "interrupted", "untouched", "untouched"}) {
		t.Errorf("run %s, hosts %v", run.Outcome, got)
	}
	if _, err := r.s.RunNow(t.Context(), "nightly-rk1", "U0ALICE01"); !errors.Is(err, schedules.ErrStopped) {
		t.Errorf("RunNow after Stop: %v", err)
	}
	if text := r.notes.all()[0].Text(); !strings.Contains(text, "<@"+onCall+">") {
		t.Errorf("summary does not mention on-call:\n%s", text)
	}
}

func TestNewRejectsBadSchedules(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*nixdeploy.Schedule)
	}{
		{"bad spec", func(s *nixdeploy.Schedule) { s.Cron = "0 3 * *" }},
		{"bad zone", func(s *nixdeploy.Schedule) { s.TimeZone = "Mars/Olympus" }},
		{"no such tag", func(s *nixdeploy.Schedule) { s.Hosts = []string{"@rk2"} }},
		{"destructive", func(s *nixdeploy.Schedule) { s.Action = nixdeploy.ActionInstall }},
		{"bad strategy", func(s *nixdeploy.Schedule) { s.Strategy = "yolo" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := nightly()
			tt.edit(&sc)
			clk := schedules.NewFakeClock(time.Now())
			_, err := schedules.New(schedules.Options{Config: fleet(sc), Store: tempDB(t, clk), Deployer: &fakeDeployer{clk: clk}})
			if !errors.Is(err, nixdeploy.ErrInvalidInput) {
				t.Fatalf("New = %v, want ErrInvalidInput", err)
			}
		})
	}
}

// TestParallelHalts: under strategy = "parallel", a host that fails while
// another is still running stops the run from starting any further host:
// those stay untouched, the one in flight finishes, and the run is
// reported failed.
func TestParallelHalts(t *testing.T) {
	sc := nightly()
	sc.Strategy, sc.Parallel = "parallel", 2
	r := newRig(t, time.Date(2026, 5, 13, 12, 0, 0, 0, berlin(t)), fleet(sc))
	release := make(chan struct{})
	r.dep.fn = func(ctx context.Context, req schedules.HostRequest) (schedules.Result, error) {
		switch req.Host {
		case "rk1-node1":
			res := r.dep.ok()
			res.State, res.Err = nixdeploy.StateFailed, errors.New("nixos-rebuild switch exited 1")
			return res, nil
		case "rk1-node2":
			<-release
		}
		return r.dep.ok(), nil
	}
	if _, err := r.s.RunNow(t.Context(), "nightly-rk1", "U0ALICE01"); err != nil {
		t.Fatal(err)
	}
	// rk1-node1 fails while rk1-node2 is still running; the slot it frees
	// must not start rk1-node3. Wait until the run has recorded what it
	// did with rk1-node3 before letting rk1-node2 finish.
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs := r.runs(t, "nightly-rk1")
		if len(runs) == 1 && slices.ContainsFunc(runs[0].Hosts, func(h nixdeploy.ScheduleRunHost) bool { return h.Host == "rk1-node3" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never decided about rk1-node3 while rk1-node2 was running")
		}
		time.Sleep(10 * time.Millisecond) // polling the database; no event to wait on
	}
	close(release)
	r.s.Wait()
	if got := r.dep.hosts(); !slices.Equal(got, []string{"rk1-node1", "rk1-node2"}) && !slices.Equal(got, []string{"rk1-node2", "rk1-node1"}) {
		t.Errorf("deployed %v, want rk1-node1 and rk1-node2 only", got)
	}
	runs := r.runs(t, "nightly-rk1")
	if len(runs) != 1 || runs[0].Outcome != schedules.OutcomeFailed {
		t.Fatalf("runs = %+v, want one failed", runs)
	}
	var got []string
	for _, h := range runs[0].Hosts {
		got = append(got, h.Host+"="+string(h.Outcome))
	}
	slices.Sort(got)
	if want := []string{"rk1-node1=failed", "rk1-node2=succeeded", "rk1-node3=untouched", "rk1-node4=untouched"}; !slices.Equal(got, want) {
		t.Errorf("run hosts = %v, want %v", got, want)
	}
	if sums := r.notes.all(); len(sums) != 1 || !strings.Contains(sums[0].Text(), "halted: rk1-node1 failed") {
		t.Errorf("summaries: %+v", sums)
	}
}
