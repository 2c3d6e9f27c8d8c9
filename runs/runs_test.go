package runs_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/runs"
)

// fakeExec stands in for the deployer: it knows the hosts in known, fails
// with fail when set, leaves the outcome on dep as the deployer does, and
// blocks in Run while hold is open.
type fakeExec struct {
	mu    sync.Mutex
	known map[string]bool
	fail  error
	fp    string
	ran   []nixdeploy.Deployment
	hold  chan struct{}
	// running receives each deployment as Run begins.
	running chan nixdeploy.Deployment
}

func (f *fakeExec) Check(dep nixdeploy.Deployment) error {
	for _, h := range dep.Hosts {
		if !f.known[h] {
			return nixdeploy.ErrUnknownHost
		}
	}
	return nil
}

func (f *fakeExec) Fingerprint(dep nixdeploy.Deployment) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fp + "/" + string(dep.Action), nil
}

func (f *fakeExec) setFingerprint(fp string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fp = fp
}

func (f *fakeExec) Run(ctx context.Context, dep *nixdeploy.Deployment, _ ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	f.mu.Lock()
	f.ran = append(f.ran, *dep)
	hold, running := f.hold, f.running
	f.mu.Unlock()
	if running != nil {
		running <- *dep
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			st := nixdeploy.StateCancelled
			if errors.Is(context.Cause(ctx), nixdeploy.ErrShutdown) {
				st = nixdeploy.StateInterrupted
			}
			return &nixdeploy.Report{DeploymentID: dep.ID, State: st}, &nixdeploy.StepError{Host: dep.Hosts[0], Step: "nixos-rebuild", ExitCode: -1, Err: context.Cause(ctx)}
		}
	}
	rep := &nixdeploy.Report{DeploymentID: dep.ID, State: nixdeploy.StateSucceeded}
	if f.fail != nil {
		rep.State, dep.ExitCode, dep.Error = nixdeploy.StateFailed, 3, "step x failed (redacted)"
		return rep, &nixdeploy.StepError{Host: dep.Hosts[0], Step: "nixos-rebuild", ExitCode: 3, Err: f.fail}
	}
	return rep, nil
}

func (f *fakeExec) runs() []nixdeploy.Deployment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ran)
}

// presenter records what the lifecycle told it.
type presenter struct {
	mu        sync.Mutex
	asked     []nixdeploy.Approval
	decisions []runs.Decision
	started   []int64
	resumed   []int64 // started with Resumed: a reattach carries on
	finished  []runs.Result
}

func (p *presenter) AskApproval(_ context.Context, _ nixdeploy.Deployment, a nixdeploy.Approval, _ string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, a)
	return "ts-1", nil
}

func (p *presenter) Decided(_ context.Context, d runs.Decision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.decisions = append(p.decisions, d)
}

func (p *presenter) Started(_ context.Context, dep nixdeploy.Deployment, _, _ string) runs.Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = append(p.started, dep.ID)
	if dep.Resumed {
		p.resumed = append(p.resumed, dep.ID)
	}
	return progress{p}
}

// Sentence is what people read; the record must keep it, not the chain.
func (p *presenter) Sentence(res runs.Result) string { return "sentence for people" }

func (p *presenter) kinds() []runs.DecisionKind {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []runs.DecisionKind
	for _, d := range p.decisions {
		out = append(out, d.Kind)
	}
	return out
}

type progress struct{ p *presenter }

func (progress) Line(nixdeploy.LogLine) {}
func (g progress) Finished(_ context.Context, _ nixdeploy.Deployment, res runs.Result, _ string) {
	g.p.mu.Lock()
	defer g.p.mu.Unlock()
	g.p.finished = append(g.p.finished, res)
}

// clock moves only when told to; timers never fire on their own.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *clock) AfterFunc(time.Duration, func()) func() bool { return func() bool { return true } }

func open(t *testing.T, path string) *db.DB {
	t.Helper()
	d, _, err := db.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// rig is a lifecycle over a real database with a fake executor.
type rig struct {
	path  string
	store *db.DB
	exec  *fakeExec
	pres  *presenter
	clock *clock
	life  *runs.Lifecycle
}

func newRig(t *testing.T, wrap func(*db.DB) runs.Store) *rig {
	t.Helper()
	r := &rig{path: filepath.Join(t.TempDir(), "x.db"), exec: &fakeExec{known: map[string]bool{"ganon": true, "zelda": true}, fp: "v1"},
		pres: &presenter{}, clock: &clock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}}
	r.store = open(t, r.path)
	var store runs.Store = r.store
	if wrap != nil {
		store = wrap(r.store)
	}
	r.life = runs.NewWith(runs.Options{Store: store, Executor: r.exec, Presenter: r.pres, Clock: r.clock})
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r.life.Shutdown(ctx)
	})
	return r
}

func (r *rig) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.life.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) deployment(t *testing.T, id int64) nixdeploy.Deployment {
	t.Helper()
	d, err := r.store.Deployment(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (r *rig) approval(t *testing.T, id int64) nixdeploy.Approval {
	t.Helper()
	a, err := r.store.ApprovalByMessage(t.Context(), "C1", "ts-1")
	if err != nil || a.ID != id {
		t.Fatalf("approval %d: %+v %v", id, a, err)
	}
	return a
}

func (r *rig) audited(t *testing.T, id int64, actor, kind string) bool {
	t.Helper()
	events, err := r.store.AuditTrail(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Actor == actor && e.Kind == kind {
			return true
		}
	}
	return false
}

func install(by string) runs.Request {
	return runs.Request{Request: nixdeploy.Request{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall, Requester: by}, Channel: "C1"}
}

func switchReq(by string, hosts ...string) runs.Request {
	return runs.Request{Request: nixdeploy.Request{Hosts: hosts, Action: nixdeploy.ActionSwitch, Requester: by}, Channel: "C1"}
}

// Run stores the deployment, starts it, and records the executor's end
// (its exit code and redacted text); an unknown or busy host stores
// nothing and runs nothing.
func TestRunOwnsTheRow(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	store := open(t, path)
	exec := &fakeExec{known: map[string]bool{"ganon": true}, fail: errors.New("raw chain: with output")}
	life := runs.New(store, exec)
	dep := &nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionSwitch, Requester: "me"}
	if _, err := life.Run(ctx, dep); err == nil {
		t.Fatal("a failed run returned no error")
	}
	got, err := store.Deployment(ctx, dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != nixdeploy.StateFailed || got.ExitCode != 3 || got.Error != "step x failed (redacted)" || got.StartedAt.IsZero() {
		t.Errorf("stored %+v, want failed, exit 3, the executor's redacted text, started", got)
	}

	if _, err := life.Run(ctx, &nixdeploy.Deployment{Hosts: []string{"nope"}, Action: nixdeploy.ActionSwitch}); !errors.Is(err, nixdeploy.ErrUnknownHost) {
		t.Errorf("unknown host: %v", err)
	}
	// Another process on the same file holds ganon.
	if err := open(t, path).ClaimHosts(ctx, 77, []string{"ganon"}); err != nil {
		t.Fatal(err)
	}
	if _, err := life.Run(ctx, &nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionSwitch}); !errors.Is(err, nixdeploy.ErrHostBusy) {
		t.Errorf("busy host: %v", err)
	}
	if deps, _ := store.Deployments(ctx, "", 10); len(deps) != 1 {
		t.Errorf("%d deployments stored, want only the one that ran", len(deps))
	}
	if n := len(exec.runs()); n != 1 {
		t.Errorf("executor ran %d times, want 1", n)
	}
}

// Submit of a switch starts it, and its record keeps the presenter's
// sentence, not the executor's error chain.
func TestSubmitRunsAndRecordsTheSentence(t *testing.T) {
	r := newRig(t, nil)
	r.exec.fail = errors.New("exited with status 1 (last output: boom)")
	sub, err := r.life.Submit(t.Context(), switchReq("U1", "ganon"))
	if err != nil {
		t.Fatal(err)
	}
	<-sub.Done
	got := r.deployment(t, sub.Deployment.ID)
	if got.State != nixdeploy.StateFailed || got.Error != "sentence for people" {
		t.Errorf("stored %s %q, want failed with the sentence", got.State, got.Error)
	}
	if len(r.pres.started) != 1 || len(r.pres.finished) != 1 || r.pres.finished[0].Step != "nixos-rebuild" {
		t.Errorf("presenter heard started %v, finished %+v", r.pres.started, r.pres.finished)
	}
	if _, _, held, _ := r.store.HostClaim(t.Context(), "ganon"); held {
		t.Error("ganon is still claimed after the deployment ended")
	}
}

// A busy host stores nothing: busy in this process, claimed by another
// process sharing the database, or locked by someone else.
func TestSubmitOnBusyHostStoresNothing(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	r.exec.hold = make(chan struct{})
	r.exec.running = make(chan nixdeploy.Deployment, 1)
	first, err := r.life.Submit(ctx, switchReq("U1", "ganon"))
	if err != nil {
		t.Fatal(err)
	}
	<-r.exec.running

	_, err = r.life.Submit(ctx, switchReq("U2", "zelda", "ganon"))
	var busy *runs.BusyError
	if !errors.As(err, &busy) || !errors.Is(err, nixdeploy.ErrHostBusy) || busy.Holder.ID != first.Deployment.ID || busy.Holder.Requester != "U1" {
		t.Errorf("second submit: %v (%+v), want busy with #%d by U1", err, busy, first.Deployment.ID)
	}
	if _, err := r.life.Hold([]string{"ganon"}, "a power reset"); !errors.Is(err, nixdeploy.ErrHostBusy) {
		t.Errorf("a power operation took a host a deployment runs on: %v", err)
	}
	close(r.exec.hold)
	<-first.Done

	other := open(t, r.path)
	if err := other.ClaimHosts(ctx, 42, []string{"ganon"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.life.Submit(ctx, switchReq("U2", "ganon")); !errors.As(err, &busy) || busy.Owner == "" || busy.Holder.ID != 42 {
		t.Errorf("host claimed by another process: %v", err)
	}
	if err := other.ReleaseHosts(ctx, 42, []string{"ganon"}); err != nil {
		t.Fatal(err)
	}
	if err := other.LockHost(ctx, nixdeploy.HostLock{Host: "zelda", Holder: "U9", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.life.Submit(ctx, switchReq("U2", "zelda")); !errors.As(err, &busy) || busy.Lock == nil || busy.Lock.Holder != "U9" {
		t.Errorf("host locked by someone else: %v", err)
	}
	if _, err := r.life.Submit(ctx, runs.Request{Request: nixdeploy.Request{Hosts: []string{"nope"}, Action: nixdeploy.ActionSwitch, Requester: "U2"}}); !errors.Is(err, nixdeploy.ErrUnknownHost) {
		t.Errorf("unknown host: %v", err)
	}
	if deps, _ := r.store.Deployments(ctx, "", 10); len(deps) != 1 {
		t.Errorf("%d deployments stored, want only the first", len(deps))
	}
}

// A destructive request is stored awaiting approval, bound to the
// executor's plan fingerprint; the requester cannot approve it, another
// person can, and the run carries the fingerprint approved.
func TestApproveBySomeoneElse(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	sub, err := r.life.Submit(ctx, install("U1"))
	if err != nil || sub.Approval == nil {
		t.Fatalf("submit: %+v %v", sub, err)
	}
	a := r.approval(t, sub.Approval.ID)
	if a.Fingerprint != "v1/install" || a.State != nixdeploy.ApprovalPending {
		t.Errorf("approval %+v, want pending, bound to the executor's fingerprint", a)
	}
	if err := r.life.Approve(ctx, a.ID, "U1"); !errors.Is(err, runs.ErrSelfApproval) {
		t.Errorf("self-approval: %v", err)
	}
	if a := r.approval(t, a.ID); a.State != nixdeploy.ApprovalPending {
		t.Errorf("a refused self-approval left the approval %s", a.State)
	}
	if !r.audited(t, sub.Deployment.ID, "U1", "approval-refused-self") {
		t.Error("the refused self-approval is not audited")
	}
	if err := r.life.Approve(ctx, a.ID, "U2"); err != nil {
		t.Fatal(err)
	}
	r.settle(t)
	ran := r.exec.runs()
	if len(ran) != 1 || ran[0].Fingerprint != "v1/install" {
		t.Fatalf("runs %+v, want one carrying the approved fingerprint", ran)
	}
	if got := r.deployment(t, sub.Deployment.ID); got.State != nixdeploy.StateSucceeded {
		t.Errorf("deployment %s", got.State)
	}
	if k := r.pres.kinds(); !slices.Equal(k, []runs.DecisionKind{runs.Approved}) {
		t.Errorf("decisions %v", k)
	}
	if err := r.life.Approve(ctx, a.ID, "U3"); !errors.Is(err, runs.ErrDecided) {
		t.Errorf("a second approval: %v", err)
	}
}

// An approval after its expiry is refused, ends the approval expired and
// is audited with the late approver.
func TestApproveAfterExpiryRefused(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	sub, err := r.life.Submit(ctx, install("U1"))
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Jump(15*time.Minute + time.Second)
	if err := r.life.Approve(ctx, sub.Approval.ID, "U2"); !errors.Is(err, runs.ErrExpired) {
		t.Errorf("late approval: %v", err)
	}
	if a := r.approval(t, sub.Approval.ID); a.State != nixdeploy.ApprovalExpired {
		t.Errorf("approval %s, want expired", a.State)
	}
	if got := r.deployment(t, sub.Deployment.ID); got.State != nixdeploy.StateExpired {
		t.Errorf("deployment %s, want expired", got.State)
	}
	if !r.audited(t, sub.Deployment.ID, "U2", "approval-refused-expired") {
		t.Error("the late approval is not audited")
	}
	if len(r.exec.runs()) != 0 {
		t.Error("an expired approval ran")
	}
}

// An approval whose plan changed since the request is refused: the
// approval is void, the deployment cancelled, nothing runs.
func TestApproveWithChangedFingerprintRefused(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	sub, err := r.life.Submit(ctx, install("U1"))
	if err != nil {
		t.Fatal(err)
	}
	r.exec.setFingerprint("v2")
	if err := r.life.Approve(ctx, sub.Approval.ID, "U2"); !errors.Is(err, nixdeploy.ErrPlanChanged) {
		t.Errorf("approval of a changed plan: %v", err)
	}
	r.settle(t)
	if a := r.approval(t, sub.Approval.ID); a.State != nixdeploy.ApprovalRejected {
		t.Errorf("approval %s, want rejected (void)", a.State)
	}
	if got := r.deployment(t, sub.Deployment.ID); got.State != nixdeploy.StateCancelled {
		t.Errorf("deployment %s, want cancelled", got.State)
	}
	if !r.audited(t, sub.Deployment.ID, "U2", "approval-refused-changed") {
		t.Error("the refusal is not audited")
	}
	if k := r.pres.kinds(); !slices.Equal(k, []runs.DecisionKind{runs.Void}) {
		t.Errorf("decisions %v", k)
	}
	if len(r.exec.runs()) != 0 {
		t.Error("a changed plan ran")
	}
}

// hookStore runs afterApprove once an approval is recorded as approved,
// before the lifecycle starts the deployment: the window a cancel can
// race into.
type hookStore struct {
	*db.DB
	afterApprove func()
}

func (s *hookStore) DecideApproval(ctx context.Context, id int64, st nixdeploy.ApprovalState, by string) (bool, error) {
	ok, err := s.DB.DecideApproval(ctx, id, st, by)
	if ok && err == nil && st == nixdeploy.ApprovalApproved && s.afterApprove != nil {
		s.afterApprove()
	}
	return ok, err
}

// A cancel between the approval and the start has one outcome: the
// deployment is cancelled, the approve says it did not start, the
// presenter hears "not started", and nothing runs.
func TestCancelRacingApprove(t *testing.T) {
	hs := &hookStore{}
	r := newRig(t, func(d *db.DB) runs.Store { hs.DB = d; return hs })
	ctx := t.Context()
	sub, err := r.life.Submit(ctx, install("U1"))
	if err != nil {
		t.Fatal(err)
	}
	var out runs.CancelOutcome
	var cerr error
	hs.afterApprove = func() { out, cerr = r.life.Cancel(ctx, sub.Deployment.ID, "U1") }
	err = r.life.Approve(ctx, sub.Approval.ID, "U2")
	if !errors.Is(err, runs.ErrNotStarted) {
		t.Errorf("approve after the cancel: %v, want not started", err)
	}
	if cerr != nil || out != runs.CancelledUnstarted {
		t.Errorf("cancel: %v %v, want cancelled before the start", out, cerr)
	}
	r.settle(t)
	if got := r.deployment(t, sub.Deployment.ID); got.State != nixdeploy.StateCancelled {
		t.Errorf("deployment %s, want cancelled", got.State)
	}
	if k := r.pres.kinds(); !slices.Equal(k, []runs.DecisionKind{runs.NotStarted}) {
		t.Errorf("decisions %v, want only not-started", k)
	}
	if len(r.exec.runs()) != 0 || len(r.pres.started) != 0 {
		t.Error("the cancelled install ran")
	}
}

// Cancel of a pending request ends the approval too; of a running one
// stops it, recorded as cancelled by the canceller; of an ended one says
// so.
func TestCancel(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	sub, err := r.life.Submit(ctx, install("U1"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.life.Cancel(ctx, sub.Deployment.ID, "U1"); out != runs.CancelledPending || err != nil {
		t.Errorf("cancel pending: %v %v", out, err)
	}
	if a := r.approval(t, sub.Approval.ID); a.State != nixdeploy.ApprovalRejected {
		t.Errorf("approval %s after cancel", a.State)
	}
	if _, err := r.life.Cancel(ctx, sub.Deployment.ID, "U1"); !errors.Is(err, runs.ErrEnded) {
		t.Errorf("cancel of an ended one: %v", err)
	}

	r.exec.hold = make(chan struct{})
	r.exec.running = make(chan nixdeploy.Deployment, 1)
	run, err := r.life.Submit(ctx, switchReq("U1", "zelda"))
	if err != nil {
		t.Fatal(err)
	}
	<-r.exec.running
	if out, err := r.life.Cancel(ctx, run.Deployment.ID, "U2"); out != runs.Stopping || err != nil {
		t.Errorf("cancel running: %v %v", out, err)
	}
	<-run.Done
	if got := r.deployment(t, run.Deployment.ID); got.State != nixdeploy.StateCancelled {
		t.Errorf("deployment %s, want cancelled", got.State)
	}
	if !r.audited(t, run.Deployment.ID, "U2", "cancelled") {
		t.Error("the end is not audited with the canceller")
	}
}

// Reject ends a pending approval and its deployment once.
func TestReject(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	sub, err := r.life.Submit(ctx, install("U1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.life.Reject(ctx, sub.Approval.ID, "U1"); err != nil {
		t.Fatal(err)
	}
	if err := r.life.Reject(ctx, sub.Approval.ID, "U2"); !errors.Is(err, runs.ErrDecided) {
		t.Errorf("second reject: %v", err)
	}
	if got := r.deployment(t, sub.Deployment.ID); got.State != nixdeploy.StateRejected {
		t.Errorf("deployment %s", got.State)
	}
}

// Shutdown lets nothing new in and interrupts what still runs after the
// grace period, recorded as interrupted.
func TestShutdownInterrupts(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	r.exec.hold = make(chan struct{})
	r.exec.running = make(chan nixdeploy.Deployment, 1)
	sub, err := r.life.Submit(ctx, switchReq("U1", "ganon"))
	if err != nil {
		t.Fatal(err)
	}
	<-r.exec.running
	grace, cancel := context.WithCancel(ctx)
	cancel()
	stopped := r.life.Shutdown(grace)
	if len(stopped) != 1 || stopped[0].ID != sub.Deployment.ID {
		t.Errorf("stopped %+v", stopped)
	}
	if got := r.deployment(t, sub.Deployment.ID); got.State != nixdeploy.StateInterrupted {
		t.Errorf("deployment %s, want interrupted", got.State)
	}
	if _, err := r.life.Submit(ctx, switchReq("U1", "zelda")); !errors.Is(err, nixdeploy.ErrShutdown) {
		t.Errorf("submit after shutdown: %v", err)
	}
}

// reattachExec is an executor that can take over a deployment a dead
// process left running.
type reattachExec struct {
	*fakeExec
	reattached chan int64
}

func (e *reattachExec) Reattach(_ context.Context, dep *nixdeploy.Deployment, _ ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	e.reattached <- dep.ID
	return &nixdeploy.Report{DeploymentID: dep.ID, State: nixdeploy.StateSucceeded}, nil
}

// Recover adopts a deployment whose long step a dead process left running
// on the runner and hands it to an executor that can reattach (issue 14):
// its record is the reattached run's end, and the presenter is told it
// resumed. A deployment the dead process left in a short step has nothing
// to reattach and stays interrupted, for the presenter to announce.
func TestRecoverReattaches(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	first := open(t, path)
	left := nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionSwitch, Source: nixdeploy.SourceSlack, State: nixdeploy.StateQueued}
	short := nixdeploy.Deployment{Hosts: []string{"zelda"}, Action: nixdeploy.ActionSwitch, Source: nixdeploy.SourceSlack, State: nixdeploy.StateQueued}
	for _, d := range []*nixdeploy.Deployment{&left, &short} {
		if err := first.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := first.SetState(ctx, d.ID, nixdeploy.StateRunning); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.StartRemoteStep(ctx, &nixdeploy.RemoteStep{DeploymentID: left.ID, Host: "ganon", Step: "nixos-rebuild", Runner: "local",
		Dir: "/tmp/tmp.x", Name: "nixos-rebuild", StartedAt: time.Now(), Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	first.Close() // the process dies: its lease lapses

	store, interrupted, err := db.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ex := &reattachExec{fakeExec: &fakeExec{known: map[string]bool{"ganon": true, "zelda": true}, fp: "v1"}, reattached: make(chan int64, 2)}
	pres := &presenter{}
	life := runs.NewWith(runs.Options{Store: store, Executor: ex, Presenter: pres, Clock: &clock{now: time.Now()}})
	stay, err := life.Recover(ctx, interrupted)
	if err != nil {
		t.Fatal(err)
	}
	if len(stay) != 1 || stay[0].ID != short.ID {
		t.Errorf("stay interrupted: %+v, want only #%d (no step left on the runner)", stay, short.ID)
	}
	if id := <-ex.reattached; id != left.ID {
		t.Errorf("reattached #%d, want #%d", id, left.ID)
	}
	if err := life.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := store.Deployment(ctx, left.ID); err != nil || got.State != nixdeploy.StateSucceeded {
		t.Errorf("reattached deployment recorded %s (%v)", got.State, err)
	}
	if pres.resumed == nil || pres.resumed[0] != left.ID {
		t.Errorf("the presenter was not told #%d resumed: %v", left.ID, pres.resumed)
	}
	if got, _ := store.Deployment(ctx, short.ID); got.State != nixdeploy.StateInterrupted {
		t.Errorf("the short step's deployment is %s, want interrupted", got.State)
	}
	select {
	case id := <-ex.reattached:
		t.Errorf("#%d was reattached too", id)
	default:
	}
}
