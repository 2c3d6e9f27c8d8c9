package db_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
)

// mustOpen opens a database at path and closes it when the test ends.
func mustOpen(t testing.TB, path string) (*db.DB, []nixdeploy.Deployment) {
	t.Helper()
	d, interrupted, err := db.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { d.Close() })
	return d, interrupted
}

func newDeployment(t testing.TB, d *db.DB, hosts ...string) nixdeploy.Deployment {
	t.Helper()
	dep := nixdeploy.Deployment{Hosts: hosts, Action: nixdeploy.ActionSwitch, Requester: "U1", Source: nixdeploy.SourceCLI}
	if err := d.CreateDeployment(context.Background(), &dep); err != nil {
		t.Fatal(err)
	}
	return dep
}

func TestMigrationsFromEmptyAndReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "nixdeploy.db")
	d, interrupted := mustOpen(t, path)
	if len(interrupted) != 0 {
		t.Fatalf("fresh db reported interrupted deployments: %v", interrupted)
	}
	got, err := d.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0] != "0001_init" {
		t.Fatalf("migrations = %v, want 0001_init first", got)
	}
	dep := newDeployment(t, d, "ganon")
	d.Close()

	d2, _ := mustOpen(t, path)
	again, err := d2.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again) != fmt.Sprint(got) {
		t.Fatalf("reopen re-applied migrations: %v, then %v", got, again)
	}
	back, err := d2.Deployment(ctx, dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if back.Hosts[0] != "ganon" || back.Action != nixdeploy.ActionSwitch {
		t.Fatalf("deployment after reopen = %+v", back)
	}
}

func TestOpenMarksInFlightDeploymentsInterrupted(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "nixdeploy.db")
	d, _ := mustOpen(t, path)
	queued := newDeployment(t, d, "rk1-node1")
	running := newDeployment(t, d, "rk1-node2")
	done := newDeployment(t, d, "rk1-node3")
	awaiting := nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall, Requester: "U1",
		Source: nixdeploy.SourceSlack, State: nixdeploy.StateAwaiting}
	if err := d.CreateDeployment(ctx, &awaiting); err != nil {
		t.Fatal(err)
	}
	// Still pending: the next process re-offers it, so it is not
	// interrupted.
	if err := d.CreateApproval(ctx, &nixdeploy.Approval{DeploymentID: awaiting.ID, Fingerprint: "fp", Requester: "U1",
		ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(ctx, running.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(ctx, done.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	if err := d.Finish(ctx, done.ID, nixdeploy.StateSucceeded, 0, ""); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d2, interrupted := mustOpen(t, path)
	if len(interrupted) != 2 || interrupted[0].ID != queued.ID || interrupted[1].ID != running.ID {
		t.Fatalf("interrupted = %+v, want deployments %d and %d", interrupted, queued.ID, running.ID)
	}
	for _, want := range []struct {
		id    int64
		state nixdeploy.State
	}{{queued.ID, nixdeploy.StateInterrupted}, {running.ID, nixdeploy.StateInterrupted},
		{done.ID, nixdeploy.StateSucceeded}, {awaiting.ID, nixdeploy.StateAwaiting}} {
		got, err := d2.Deployment(ctx, want.id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != want.state {
			t.Errorf("deployment %d: state %s, want %s", want.id, got.State, want.state)
		}
		if want.state == nixdeploy.StateInterrupted && (got.EndedAt.IsZero() || got.Error == "") {
			t.Errorf("interrupted deployment %d has no end time or reason: %+v", want.id, got)
		}
	}
	d2.Close()
	_, again := mustOpen(t, path)
	if len(again) != 0 {
		t.Fatalf("second reopen reported %d interrupted deployments again", len(again))
	}
}

func TestFinishedDeploymentIsNotResurrected(t *testing.T) {
	ctx := t.Context()
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	dep := newDeployment(t, d, "ganon")
	if err := d.Finish(ctx, dep.ID, nixdeploy.StateCancelled, 130, "cancelled by U2"); err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(ctx, dep.ID, nixdeploy.StateRunning); !errors.Is(err, nixdeploy.ErrNotFound) {
		t.Fatalf("SetState on a finished deployment: err = %v, want not found", err)
	}
	if err := d.Finish(ctx, dep.ID, nixdeploy.StateSucceeded, 0, ""); err == nil {
		t.Fatal("Finish twice succeeded")
	}
	got, _ := d.Deployment(ctx, dep.ID)
	if got.State != nixdeploy.StateCancelled || got.ExitCode != 130 || got.Error != "cancelled by U2" {
		t.Fatalf("deployment = %+v", got)
	}
	if err := d.Finish(ctx, dep.ID, nixdeploy.StateRunning, 0, ""); err == nil {
		t.Fatal("Finish accepted a non-final state")
	}
}

func TestLogsCompleteAndOrdered(t *testing.T) {
	ctx := t.Context()
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	dep := newDeployment(t, d, "rk1-node1")
	const total = 2345
	var seq int64
	for batch := 0; seq < total; batch++ {
		n := min(int64(batch*37+1), total-seq)
		lines := make([]nixdeploy.LogLine, n)
		for i := range lines {
			seq++
			lines[i] = nixdeploy.LogLine{Seq: seq, Time: time.Unix(0, seq), Host: "rk1-node1", Step: "switch",
				Stream: nixdeploy.StreamStdout, Text: fmt.Sprintf("line %d", seq)}
		}
		if err := d.AppendLogs(ctx, dep.ID, lines); err != nil {
			t.Fatal(err)
		}
	}
	var want int64 = 1
	err := d.EachLog(ctx, dep.ID, func(l nixdeploy.LogLine) error {
		if l.Seq != want || l.Text != fmt.Sprintf("line %d", want) {
			return fmt.Errorf("got seq %d %q, want %d", l.Seq, l.Text, want)
		}
		want++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want-1 != total {
		t.Fatalf("read %d lines, want %d", want-1, total)
	}
	dup := []nixdeploy.LogLine{{Seq: 5, Text: "again"}}
	if err := d.AppendLogs(ctx, dep.ID, dup); err == nil {
		t.Fatal("a repeated seq was accepted")
	}
}

func TestApprovalDecidedOnce(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	d, _ := mustOpen(t, path)
	dep := newDeployment(t, d, "ganon")
	a := nixdeploy.Approval{DeploymentID: dep.ID, Fingerprint: "fp1", Requester: "UA", ExpiresAt: time.Now().Add(time.Hour)}
	if err := d.CreateApproval(ctx, &a); err != nil {
		t.Fatal(err)
	}
	if err := d.SetApprovalMessage(ctx, a.ID, "C1", "1700000000.000100"); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d2, _ := mustOpen(t, path)
	pending, err := d2.PendingApprovals(ctx)
	if err != nil || len(pending) != 1 || pending[0].ID != a.ID || pending[0].Fingerprint != "fp1" {
		t.Fatalf("pending after reopen = %+v, %v", pending, err)
	}
	byMsg, err := d2.ApprovalByMessage(ctx, "C1", "1700000000.000100")
	if err != nil || byMsg.ID != a.ID {
		t.Fatalf("by message = %+v, %v", byMsg, err)
	}
	if _, err := d2.ApprovalByMessage(ctx, "C1", "1700000000.000200"); !errors.Is(err, nixdeploy.ErrNotFound) {
		t.Fatalf("other message: err = %v, want not found", err)
	}

	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, who := range []string{"UB", "UC", "UD", "UE"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := d2.DecideApproval(ctx, a.ID, nixdeploy.ApprovalApproved, who)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent decisions won, want exactly 1", wins)
	}
	got, _ := d2.Approval(ctx, a.ID)
	if got.State != nixdeploy.ApprovalApproved || got.DecidedBy == "" || got.DecidedAt.IsZero() {
		t.Fatalf("approval = %+v", got)
	}
}

func TestEventDedupeSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	d, _ := mustOpen(t, path)
	first, err := d.FirstSeen(ctx, "Ev01")
	if err != nil || !first {
		t.Fatalf("first sighting = %v, %v", first, err)
	}
	if again, _ := d.FirstSeen(ctx, "Ev01"); again {
		t.Fatal("a repeated event id was reported as new")
	}
	d.Close()
	d2, _ := mustOpen(t, path)
	if again, _ := d2.FirstSeen(ctx, "Ev01"); again {
		t.Fatal("a repeated event id was new after a restart")
	}
	n, err := d2.PruneEvents(ctx, time.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("prune = %d, %v", n, err)
	}
}

func TestAuditAndSteps(t *testing.T) {
	ctx := t.Context()
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	dep := newDeployment(t, d, "rk1-node3")
	for _, k := range []string{"requested", "approval-refused", "approved"} {
		if err := d.Audit(ctx, nixdeploy.AuditEvent{Actor: "UB", Kind: k, DeploymentID: dep.ID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Audit(ctx, nixdeploy.AuditEvent{Actor: "UX", Kind: "unrelated"}); err != nil {
		t.Fatal(err)
	}
	trail, err := d.AuditTrail(ctx, dep.ID)
	if err != nil || len(trail) != 3 || trail[1].Kind != "approval-refused" {
		t.Fatalf("trail = %+v, %v", trail, err)
	}
	step := nixdeploy.StepResult{Host: "rk1-node3", Name: "verify", StartedAt: time.Now(), EndedAt: time.Now(),
		Before: "/nix/store/aaa-nixos-system", After: "/nix/store/bbb-nixos-system"}
	if err := d.RecordStep(ctx, dep.ID, step); err != nil {
		t.Fatal(err)
	}
	steps, err := d.Steps(ctx, dep.ID)
	if err != nil || len(steps) != 1 || steps[0].After != step.After {
		t.Fatalf("steps = %+v, %v", steps, err)
	}
	cur, _, err := d.CurrentSystem(ctx, "rk1-node3")
	if err != nil || cur != step.After {
		t.Fatalf("current system = %q, %v", cur, err)
	}
	hist, err := d.Deployments(ctx, "rk1-node3", 5)
	if err != nil || len(hist) != 1 || hist[0].ID != dep.ID {
		t.Fatalf("history = %+v, %v", hist, err)
	}
	if none, _ := d.Deployments(ctx, "ganon", 5); len(none) != 0 {
		t.Fatalf("ganon history = %+v", none)
	}
}

func TestSchedulePauseSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	d, _ := mustOpen(t, path)
	if s, _ := d.Schedule(ctx, "nightly-rk1"); s.Paused {
		t.Fatal("a new schedule is paused")
	}
	if err := d.SetPaused(ctx, "nightly-rk1", true, "UA"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2, _ := mustOpen(t, path)
	s, err := d2.Schedule(ctx, "nightly-rk1")
	if err != nil || !s.Paused || s.PausedBy != "UA" {
		t.Fatalf("after restart = %+v, %v", s, err)
	}
	run := nixdeploy.ScheduleRun{Schedule: "nightly-rk1", Trigger: "cron"}
	if err := d2.StartScheduleRun(ctx, &run); err != nil {
		t.Fatal(err)
	}
	for _, h := range []nixdeploy.ScheduleRunHost{{Host: "rk1-node1", Outcome: "succeeded"}, {Host: "rk1-node2", Outcome: "failed"}} {
		if err := d2.RecordRunHost(ctx, run.ID, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := d2.FinishScheduleRun(ctx, run.ID, "failed", "rk1-node2 failed"); err != nil {
		t.Fatal(err)
	}
	runs, err := d2.ScheduleRuns(ctx, "nightly-rk1", 5)
	if err != nil || len(runs) != 1 || len(runs[0].Hosts) != 2 || runs[0].Hosts[1].Outcome != "failed" {
		t.Fatalf("runs = %+v, %v", runs, err)
	}
}

func TestHostLocks(t *testing.T) {
	ctx := t.Context()
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	now := time.Now()
	if err := d.LockHost(ctx, nixdeploy.HostLock{Host: "ganon", Holder: "UA", Reason: "gaming", ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	err := d.LockHost(ctx, nixdeploy.HostLock{Host: "ganon", Holder: "UB", ExpiresAt: now.Add(time.Hour)})
	if !errors.Is(err, nixdeploy.ErrLocked) {
		t.Fatalf("second holder: err = %v, want ErrLocked", err)
	}
	l, ok, err := d.HostLockOf(ctx, "ganon")
	if err != nil || !ok || l.Holder != "UA" || l.Reason != "gaming" {
		t.Fatalf("lock = %+v %v %v", l, ok, err)
	}
	if removed, _ := d.UnlockHost(ctx, "ganon"); !removed {
		t.Fatal("unlock found no lock")
	}
	if _, ok, _ := d.HostLockOf(ctx, "ganon"); ok {
		t.Fatal("lock still there after unlock")
	}
	// An expired lock does not block and is not reported.
	if err := d.LockHost(ctx, nixdeploy.HostLock{Host: "ganon", Holder: "UA", ExpiresAt: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.HostLockOf(ctx, "ganon"); ok {
		t.Fatal("an expired lock is reported as held")
	}
	if err := d.LockHost(ctx, nixdeploy.HostLock{Host: "ganon", Holder: "UB", ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatalf("an expired lock blocked a new one: %v", err)
	}
}

func TestPathFromEnv(t *testing.T) {
	t.Setenv("NIXDEPLOY_DB", "")
	if got := db.PathFromEnv(); got != db.DefaultPath {
		t.Fatalf("default path = %q", got)
	}
	t.Setenv("NIXDEPLOY_DB", "/data/x.db")
	if got := db.PathFromEnv(); got != "/data/x.db" {
		t.Fatalf("env path = %q", got)
	}
}

func BenchmarkAppendLogs(b *testing.B) {
	d, _ := mustOpen(b, filepath.Join(b.TempDir(), "x.db"))
	dep := newDeployment(b, d, "ganon")
	lines := make([]nixdeploy.LogLine, 1000)
	var seq int64
	b.SetBytes(int64(len(lines)) * 80)
	for b.Loop() {
		for i := range lines {
			seq++
			lines[i] = nixdeploy.LogLine{Seq: seq, Time: time.Now(), Host: "ganon", Step: "switch",
				Stream: nixdeploy.StreamStdout, Text: "building '/nix/store/abcdefghijklmnopqrstuvwxyz012345-foo-1.0.drv'..."}
		}
		if err := d.AppendLogs(context.Background(), dep.ID, lines); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(lines))/b.Elapsed().Seconds(), "lines/s")
}
