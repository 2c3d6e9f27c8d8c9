package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nixdeploy/nixdeploy"
)

// pending finds the pending approval id; the store looks approvals up by
// message, so this scans the (short) pending list.
func (l *Lifecycle) pending(ctx context.Context, match func(nixdeploy.Approval) bool) (nixdeploy.Approval, bool, error) {
	list, err := l.store.PendingApprovals(ctx)
	if err != nil {
		return nixdeploy.Approval{}, false, err
	}
	for _, a := range list {
		if match(a) {
			return a, true, nil
		}
	}
	return nixdeploy.Approval{}, false, nil
}

// TwoApprovers reports whether dep's approval takes two approvers: an
// install of several hosts under slack.multi_host_install =
// "two_approvers".
func (l *Lifecycle) TwoApprovers(dep nixdeploy.Deployment) bool {
	cfg := l.cfg()
	return dep.Action.Destructive() && len(dep.Hosts) > 1 && cfg != nil && cfg.Slack.MultiHostInstall == nixdeploy.MultiInstallTwoApprovers
}

// Approve decides pending approval id for by, who the caller found
// allowed to approve, and starts the deployment it guards. It refuses, in
// this order, with the approval unchanged unless said:
//   - ErrDecided: not pending any more (the first decision stands);
//   - ErrSelfApproval: by requested it (audited);
//   - ErrExpired: its time is over (it ends expired; audited);
//   - nixdeploy.ErrPlanChanged: the executor's plan fingerprint is not the
//     one approved for (it ends void, the deployment cancelled; audited);
//   - ErrFirstOfTwo / ErrSameApprover: it needs two different approvers
//     and this is the first, or the first again (audited).
//
// An approved deployment that cannot start (a cancel ended it first, a
// busy host) returns the reason, after the presenter heard NotStarted;
// one that started returns nil after the presenter heard Approved, then
// Started. The deployment runs with the fingerprint approved, so the
// executor refuses to wipe a disk with any other plan.
func (l *Lifecycle) Approve(ctx context.Context, id int64, by string) error {
	a, ok, err := l.pending(ctx, func(a nixdeploy.Approval) bool { return a.ID == id })
	if err != nil {
		return err
	}
	if !ok {
		return ErrDecided
	}
	log := l.log.With("approval", a.ID, "deployment", a.DeploymentID, "user", by)
	switch {
	case by == a.Requester:
		l.audit(ctx, by, "approval-refused-self", a.DeploymentID, fmt.Sprintf("approval %d", a.ID))
		log.Info("self-approval refused")
		return ErrSelfApproval
	case !l.clock.Now().Before(a.ExpiresAt):
		log.Info("approval after expiry refused")
		l.audit(ctx, by, "approval-refused-expired", a.DeploymentID, fmt.Sprintf("approval %d expired at %s", a.ID, utc(a.ExpiresAt)))
		if _, err := l.decide(ctx, a, nixdeploy.ApprovalExpired, nixdeploy.StateExpired, "", "expired", Expired); err != nil {
			return err
		}
		return ErrExpired
	}
	dep, err := l.store.Deployment(ctx, a.DeploymentID)
	if err != nil {
		return err
	}
	var sum string
	fp, ok := l.exec.(Fingerprinter)
	if !ok {
		err = ErrNoFingerprint
	} else {
		sum, err = fp.Fingerprint(dep)
	}
	if err != nil || sum != a.Fingerprint {
		l.audit(ctx, by, "approval-refused-changed", dep.ID, fmt.Sprintf("approval %d: plan fingerprint changed", a.ID))
		log.Warn("approval refused: plan changed since the request", "err", err)
		if _, derr := l.decide(ctx, a, nixdeploy.ApprovalRejected, nixdeploy.StateCancelled, "nixdeploy", "approval-void", Void); derr != nil {
			return derr
		}
		return fmt.Errorf("approval %d: %w", a.ID, nixdeploy.ErrPlanChanged)
	}
	if l.TwoApprovers(dep) {
		if err := l.firstOfTwo(ctx, a, dep, by); err != nil {
			return err
		}
	}
	ok, err = l.store.DecideApproval(ctx, a.ID, nixdeploy.ApprovalApproved, by)
	if err != nil {
		return err
	}
	if !ok {
		return ErrDecided
	}
	l.disarm(a.ID)
	l.audit(ctx, by, "approved", dep.ID, fmt.Sprintf("approval %d, fingerprint %s", a.ID, a.Fingerprint))
	log.Info("approved")
	a.State, a.DecidedBy = nixdeploy.ApprovalApproved, by
	dep.Fingerprint = a.Fingerprint
	// Mark it running before saying so: a cancel may have ended the
	// request between the approval and now, and then every message says
	// that instead.
	_, err = l.start(ctx, dep, a.Channel, by, &a, func() {
		running := dep
		running.State = nixdeploy.StateRunning
		l.present().Decided(context.WithoutCancel(ctx), Decision{Kind: Approved, Approval: a, Deployment: running, By: by, At: l.clock.Now()})
	})
	return err
}

// firstOfTwo records by's approval of a that needs two approvers. It
// returns ErrFirstOfTwo or ErrSameApprover while that approval is not the
// deciding one. The first approver is kept in memory only: after a
// restart both approvals are needed again, which errs on the safe side.
func (l *Lifecycle) firstOfTwo(ctx context.Context, a nixdeploy.Approval, dep nixdeploy.Deployment, by string) error {
	l.mu.Lock()
	first, seen := l.first[a.ID]
	if !seen {
		l.first[a.ID] = by
	} else if first != by {
		delete(l.first, a.ID)
	}
	l.mu.Unlock()
	switch {
	case !seen:
		l.audit(ctx, by, "approved-first", dep.ID, fmt.Sprintf("approval %d, fingerprint %s: one of two approvers", a.ID, a.Fingerprint))
		l.log.Info("first of two approvals", "approval", a.ID, "deployment", dep.ID, "user", by)
		return ErrFirstOfTwo
	case first == by:
		l.audit(ctx, by, "approval-refused-same-approver", dep.ID, fmt.Sprintf("approval %d", a.ID))
		return ErrSameApprover
	}
	return nil
}

// Reject decides pending approval id as rejected by by, who the caller
// found allowed to (an approver or the requester), and ends its
// deployment. ErrDecided: it was decided first.
func (l *Lifecycle) Reject(ctx context.Context, id int64, by string) error {
	a, ok, err := l.pending(ctx, func(a nixdeploy.Approval) bool { return a.ID == id })
	if err != nil {
		return err
	}
	if !ok {
		return ErrDecided
	}
	decided, err := l.decide(ctx, a, nixdeploy.ApprovalRejected, nixdeploy.StateRejected, by, "rejected", Rejected)
	if err == nil && !decided {
		err = ErrDecided
	}
	return err
}

// decide moves a pending approval and its deployment to their end states,
// once, and tells the presenter. It reports false when the approval was
// decided elsewhere first.
func (l *Lifecycle) decide(ctx context.Context, a nixdeploy.Approval, as nixdeploy.ApprovalState, ds nixdeploy.State, by, kind string, dk DecisionKind) (bool, error) {
	ok, err := l.store.DecideApproval(ctx, a.ID, as, by)
	if err != nil || !ok {
		return false, err
	}
	l.disarm(a.ID)
	actor := by
	if actor == "" {
		actor = "nixdeploy"
	}
	l.audit(ctx, actor, kind, a.DeploymentID, fmt.Sprintf("approval %d", a.ID))
	if err := l.store.SetState(ctx, a.DeploymentID, ds); err != nil && !errors.Is(err, nixdeploy.ErrNotFound) {
		l.log.Error("end deployment after approval decision", "deployment", a.DeploymentID, "err", err)
	}
	l.log.Info("approval decided", "approval", a.ID, "deployment", a.DeploymentID, "state", as, "by", by)
	a.State, a.DecidedBy = as, by
	dep, err := l.store.Deployment(ctx, a.DeploymentID)
	if err != nil {
		dep = nixdeploy.Deployment{ID: a.DeploymentID, State: ds}
	}
	if by == "nixdeploy" {
		by = ""
	}
	l.present().Decided(context.WithoutCancel(ctx), Decision{Kind: dk, Approval: a, Deployment: dep, By: by, At: l.clock.Now()})
	return true, nil
}

// armExpiry makes a pending approval expire at its ExpiresAt, which may
// already have passed after a restart.
func (l *Lifecycle) armExpiry(a nixdeploy.Approval) {
	fire := func() {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return
		}
		l.work.Add()
		l.mu.Unlock()
		go func() {
			defer l.work.Done()
			if err := l.expire(l.ctx, a.ID); err != nil {
				l.log.Error("expire approval", "approval", a.ID, "err", err)
			}
		}()
	}
	d := a.ExpiresAt.Sub(l.clock.Now())
	if d <= 0 {
		fire()
		return
	}
	stop := l.clock.AfterFunc(d, fire)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		stop()
		return
	}
	if old := l.timers[a.ID]; old != nil {
		old()
	}
	l.timers[a.ID] = stop
}

func (l *Lifecycle) disarm(approvalID int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if stop := l.timers[approvalID]; stop != nil {
		stop()
		delete(l.timers, approvalID)
	}
	delete(l.first, approvalID)
}

// expire ends a pending approval whose time ran out.
func (l *Lifecycle) expire(ctx context.Context, approvalID int64) error {
	a, ok, err := l.pending(ctx, func(a nixdeploy.Approval) bool { return a.ID == approvalID })
	if err != nil || !ok {
		return err
	}
	_, err = l.decide(ctx, a, nixdeploy.ApprovalExpired, nixdeploy.StateExpired, "", "expired", Expired)
	return err
}

// CancelOutcome is what a cancel did.
type CancelOutcome int

// Cancel outcomes.
const (
	// Stopping: the deployment runs here and is being stopped; its
	// Progress hears Finished with the canceller.
	Stopping CancelOutcome = iota + 1
	// CancelledPending: it awaited approval; the approval ended too.
	CancelledPending
	// CancelledUnstarted: it had not started and never will.
	CancelledUnstarted
)

// Cancel cancels deployment id for by, who the caller found allowed to.
// Of a cancel and a start only one wins: a deployment that has not
// started is ended by a conditional update, and a start that loses finds
// it ended. A deployment that ended is ErrEnded; one that another process
// runs is ErrElsewhere.
func (l *Lifecycle) Cancel(ctx context.Context, id int64, by string) (CancelOutcome, error) {
	if l.stop(id, by) {
		l.audit(ctx, by, "cancel-requested", id, "running deployment")
		return Stopping, nil
	}
	if a, ok, err := l.pending(ctx, func(a nixdeploy.Approval) bool { return a.DeploymentID == id }); err != nil {
		return 0, err
	} else if ok {
		decided, err := l.decide(ctx, a, nixdeploy.ApprovalRejected, nixdeploy.StateCancelled, by, "cancelled", Cancelled)
		if err != nil {
			return 0, err
		}
		if decided {
			return CancelledPending, nil
		}
		// Approved (or rejected) meanwhile: end it below unless it
		// started.
	}
	err := l.store.EndUnstarted(ctx, id, nixdeploy.StateCancelled, "cancelled by "+by)
	if errors.Is(err, nixdeploy.ErrNotFound) {
		if l.stop(id, by) {
			l.audit(ctx, by, "cancel-requested", id, "running deployment")
			return Stopping, nil
		}
		cur, gerr := l.store.Deployment(ctx, id)
		if gerr != nil {
			return 0, fmt.Errorf("cancel %d: %w", id, gerr)
		}
		if cur.State.Final() {
			return 0, fmt.Errorf("deployment %d is %s: %w", id, cur.State, ErrEnded)
		}
		return 0, fmt.Errorf("deployment %d: %w", id, ErrElsewhere)
	}
	if err != nil {
		return 0, err
	}
	l.audit(ctx, by, "cancelled", id, "not started")
	return CancelledUnstarted, nil
}

// stop cancels deployment id if this process runs it, on behalf of by.
func (l *Lifecycle) stop(id int64, by string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.active[id]
	if r == nil {
		return false
	}
	r.cancelledBy = by
	r.cancel(nixdeploy.ErrCancelled)
	return true
}

// Recover is called once at start, after the database recovered what a
// dead process left (db.Open ends approved-but-unstarted requests and
// running deployments of lapsed owners as interrupted). It re-arms the
// expiry of every pending approval (one whose time passed expires now),
// and, when the executor is a Reattacher and the store a ReattachStore,
// adopts each deployment whose long step a dead process left running on
// the runner and hands it to the executor: it then runs on in this process
// as if it had never stopped (Started, Finished; the presenter carries on
// its status message), and its record is its real end. It returns the
// deployments that stay interrupted (interrupted, as db.Open left them),
// for the presenter to announce.
func (l *Lifecycle) Recover(ctx context.Context, interrupted []nixdeploy.Deployment) ([]nixdeploy.Deployment, error) {
	pending, err := l.store.PendingApprovals(ctx)
	if err != nil {
		return interrupted, fmt.Errorf("recover approvals: %w", err)
	}
	for _, a := range pending {
		l.armExpiry(a)
	}
	// The deployments a dead (or shut-down) process left with a long step
	// running on the runner (issue 14) run on here in the background, and
	// their status messages carry on. Deployments that were in a short
	// step have nothing to reattach: they stay interrupted, for the
	// presenter to announce.
	if _, err := l.reattachLeft(ctx, nil); err != nil {
		return interrupted, err
	}
	return interrupted, nil
}

// Reattached is a deployment ReattachLeft picked up, and how it ended.
type Reattached struct {
	Deployment nixdeploy.Deployment
	// Report is the executor's, nil when the run could not be followed;
	// Err says why it failed or what is unknown.
	Report *nixdeploy.Report
	Err    error
}

// ReattachLeft is Recover's reattach for the terminal (nixdeploy deploy):
// it adopts each deployment whose long step a dead process left running
// on the runner, runs it on here with sink(dep) as its log's sink, one
// after the other, records each end and returns them. Without a
// Reattacher executor or a ReattachStore it does nothing.
func (l *Lifecycle) ReattachLeft(ctx context.Context, sink func(nixdeploy.Deployment) nixdeploy.Sink) ([]Reattached, error) {
	return l.reattachLeft(ctx, sink)
}

// reattachLeft adopts and runs on the deployments left running on the
// runner. With sink nil they run in the background (Recover) and nothing
// is returned; otherwise one after the other, and each one's end is.
func (l *Lifecycle) reattachLeft(ctx context.Context, sink func(nixdeploy.Deployment) nixdeploy.Sink) ([]Reattached, error) {
	re, ok := l.exec.(Reattacher)
	rs, ok2 := l.store.(ReattachStore)
	if !ok || !ok2 {
		return nil, nil
	}
	left, err := rs.Reattachable(ctx)
	if err != nil {
		return nil, fmt.Errorf("recover deployments left running: %w", err)
	}
	var out []Reattached
	for _, dep := range left {
		if err := rs.Adopt(ctx, dep.ID); err != nil {
			l.log.Info("not reattaching", "deployment", dep.ID, "err", err) // another process took it first
			continue
		}
		dep.State, dep.Resumed = nixdeploy.StateRunning, true
		r, err := l.claim(ctx, dep)
		if err != nil {
			l.log.Warn("cannot reattach", "deployment", dep.ID, "err", err)
			continue
		}
		l.log.Info("reattaching", "deployment", dep.ID, "hosts", dep.Hosts)
		var got Reattached
		run := func(ctx context.Context, d nixdeploy.Deployment, s nixdeploy.Sink) Result {
			sinks := []nixdeploy.Sink{s}
			if sink != nil {
				if extra := sink(d); extra != nil {
					sinks = append(sinks, extra)
				}
			}
			rep, err := re.Reattach(ctx, &d, sinks...)
			got = Reattached{Deployment: d, Report: rep, Err: err}
			if rep == nil && err != nil {
				// Neither the step's end nor its state could be
				// learned: the error says what is unknown.
				return Result{State: nixdeploy.StateInterrupted, ExitCode: 1, Err: err, Redacted: err.Error()}
			}
			return resultOf(rep, err)
		}
		l.mu.Lock()
		l.work.Add()
		l.mu.Unlock()
		if sink == nil {
			go func() {
				defer l.work.Done()
				l.executeWith(r, dep.Channel, "", run)
			}()
			continue
		}
		l.executeWith(r, dep.Channel, "", run)
		l.work.Done()
		if rec, err := l.store.Deployment(context.WithoutCancel(ctx), dep.ID); err == nil {
			got.Deployment = rec
		}
		out = append(out, got)
	}
	return out, nil
}

// Shutdown takes no new work and stops the expiry timers (pending
// approvals stay stored; the next Recover re-arms them). Deployments in
// flight may finish until ctx ends; those still running then are stopped
// with nixdeploy.ErrShutdown as the cause, so they are recorded and shown
// as interrupted. Shutdown returns them, by id, once every run has
// recorded and shown its end.
func (l *Lifecycle) Shutdown(ctx context.Context) []nixdeploy.Deployment {
	l.mu.Lock()
	l.closed = true
	for id, stop := range l.timers {
		stop()
		delete(l.timers, id)
	}
	l.mu.Unlock()
	if l.work.Wait(ctx) == nil {
		l.cancel(nixdeploy.ErrShutdown)
		return nil
	}
	l.mu.Lock()
	var stopped []nixdeploy.Deployment
	for _, r := range l.active {
		if !r.ended {
			stopped = append(stopped, r.dep)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(stopped, func(x, y nixdeploy.Deployment) int { return int(x.ID - y.ID) })
	l.log.Warn("shutdown grace period over: interrupting deployments", "deployments", len(stopped))
	l.cancel(nixdeploy.ErrShutdown)
	// Each run still records and shows its end, bounded by finishTimeout.
	_ = l.work.Wait(context.Background())
	return stopped
}
