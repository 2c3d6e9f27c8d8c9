package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// finishTimeout bounds recording and showing a deployment's end (final
// message, log upload, DB rows) after its context is gone.
const finishTimeout = 2 * time.Minute

// Request is a deployment request.
type Request struct {
	nixdeploy.Request
	// Channel is where the presenter shows it; runs only hands it back.
	Channel string
	// What is the request as the audit trail names it; default the
	// action and the hosts.
	What string
}

// Submitted is what Submit did.
type Submitted struct {
	// Deployment is the stored deployment.
	Deployment nixdeploy.Deployment
	// Approval is the pending approval of a destructive request, nil
	// when it started.
	Approval *nixdeploy.Approval
	// Done is closed once a started deployment's end is recorded and
	// shown; nil for one awaiting approval.
	Done <-chan struct{}
}

// Submit checks req, stores it and either starts it (its hosts claimed
// here and in the database) or, for a destructive action, pins its plan
// (Resolver), binds a pending approval to the executor's plan fingerprint
// and has the presenter ask for it. A host that is busy (a deployment in
// any process sharing the database, an operation here, a manual lock of
// someone else) is a *BusyError and stores nothing; so is an unknown host
// (nixdeploy.ErrUnknownHost). After Shutdown every request is refused with
// nixdeploy.ErrShutdown, before anything is stored.
func (l *Lifecycle) Submit(ctx context.Context, req Request) (Submitted, error) {
	if l.isClosed() {
		return Submitted{}, nixdeploy.ErrShutdown
	}
	dep := nixdeploy.Deployment{
		Hosts: slices.Clone(req.Hosts), Action: req.Action, Requester: req.Requester, Source: req.Source,
		State: nixdeploy.StateQueued, CreatedAt: l.clock.Now().UTC(), Image: req.Image, Recover: req.Recover, Guard: req.Guard,
	}
	if dep.Source == "" {
		dep.Source = nixdeploy.SourceSlack
	}
	if c, ok := l.exec.(Checker); ok {
		if err := c.Check(dep); err != nil {
			return Submitted{}, err
		}
	}
	destructive := req.Action.Destructive()
	var fp Fingerprinter
	if destructive {
		var ok bool
		if fp, ok = l.exec.(Fingerprinter); !ok {
			return Submitted{}, ErrNoFingerprint
		}
		dep.State = nixdeploy.StateAwaiting
	}
	if err := l.Free(ctx, req.Requester, req.Hosts); err != nil {
		return Submitted{}, err
	}
	if err := l.store.CreateDeployment(ctx, &dep); err != nil {
		return Submitted{}, fmt.Errorf("record %s %s: %w", dep.Action, strings.Join(dep.Hosts, ", "), err)
	}
	what := req.What
	if what == "" {
		what = fmt.Sprintf("%s %s", dep.Action, strings.Join(dep.Hosts, ", "))
	}
	l.audit(ctx, req.Requester, "requested", dep.ID, what)
	l.log.Info("deployment requested", "deployment", dep.ID, "action", dep.Action, "hosts", dep.Hosts, "by", req.Requester)
	if !destructive {
		done, err := l.start(ctx, dep, req.Channel, "", nil, nil)
		return Submitted{Deployment: dep, Done: done}, err
	}
	a, err := l.ask(ctx, &dep, fp, req.Channel)
	if err != nil {
		return Submitted{Deployment: dep}, err
	}
	return Submitted{Deployment: dep, Approval: &a}, nil
}

// ask pins dep, binds a pending approval to its plan fingerprint and has
// it shown.
func (l *Lifecycle) ask(ctx context.Context, dep *nixdeploy.Deployment, fp Fingerprinter, channel string) (nixdeploy.Approval, error) {
	if r, ok := l.exec.(Resolver); ok && dep.Lock == nil {
		// Pin what will run before anyone approves it: the revision and
		// the disks the flake formats, asked on the runner.
		lock, err := r.Resolve(ctx, *dep)
		if err != nil {
			err = &ResolveError{Err: err}
			l.endUnstarted(ctx, *dep, nixdeploy.StateFailed, err, nil, "")
			return nixdeploy.Approval{}, err
		}
		dep.Lock = lock
		if err := l.store.SetLock(ctx, dep.ID, lock); err != nil {
			return nixdeploy.Approval{}, fmt.Errorf("record the resolved revision: %w", err)
		}
	}
	sum, err := fp.Fingerprint(*dep)
	if err != nil {
		l.endUnstarted(ctx, *dep, nixdeploy.StateFailed, err, nil, "")
		return nixdeploy.Approval{}, err
	}
	now := l.clock.Now().UTC()
	a := nixdeploy.Approval{
		DeploymentID: dep.ID, Fingerprint: sum, Requester: dep.Requester,
		State: nixdeploy.ApprovalPending, CreatedAt: now, ExpiresAt: now.Add(l.ttl()),
	}
	if err := l.store.CreateApproval(ctx, &a); err != nil {
		return a, fmt.Errorf("create approval: %w", err)
	}
	ts, err := l.present().AskApproval(ctx, *dep, a, channel)
	if err != nil {
		// Without a message nobody can approve; end it now rather than
		// leave a pending approval no one can see.
		if ok, derr := l.store.DecideApproval(context.WithoutCancel(ctx), a.ID, nixdeploy.ApprovalRejected, "nixdeploy"); derr != nil || !ok {
			l.log.Error("void unposted approval", "approval", a.ID, "err", derr)
		}
		l.endUnstarted(ctx, *dep, nixdeploy.StateCancelled, err, nil, "")
		return a, fmt.Errorf("post approval message: %w", err)
	}
	a.Channel, a.MessageTS = channel, ts
	if ts != "" {
		if err := l.store.SetApprovalMessage(ctx, a.ID, channel, ts); err != nil {
			return a, fmt.Errorf("record approval message: %w", err)
		}
		if err := l.store.SetMessage(ctx, dep.ID, channel, ts); err != nil {
			l.log.Error("record approval message on deployment", "deployment", dep.ID, "err", err)
		}
	}
	l.audit(ctx, "nixdeploy", "approval-posted", dep.ID, fmt.Sprintf("approval %d, fingerprint %s, expires %s", a.ID, a.Fingerprint, utc(a.ExpiresAt)))
	l.armExpiry(a)
	return a, nil
}

func (l *Lifecycle) ttl() time.Duration {
	if cfg := l.cfg(); cfg != nil && cfg.Slack.ApprovalTTL.Duration > 0 {
		return cfg.Slack.ApprovalTTL.Duration
	}
	return 15 * time.Minute
}

// Free reports whether hosts are free for user: none held in this
// process, claimed by another process sharing the database, or locked by
// someone else. The error is a *BusyError.
func (l *Lifecycle) Free(ctx context.Context, user string, hosts []string) error {
	l.mu.Lock()
	err := l.takenLocked(hosts)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if c, ok := l.store.(Claims); ok {
		for _, h := range hosts {
			id, owner, held, err := c.HostClaim(ctx, h)
			if err != nil {
				return fmt.Errorf("check claim of %s: %w", h, err)
			}
			if held {
				return &BusyError{Host: h, Holder: nixdeploy.Deployment{ID: id}, Owner: owner}
			}
		}
	}
	if lk, ok := l.store.(Locks); ok {
		for _, h := range hosts {
			hl, locked, err := lk.HostLockOf(ctx, h)
			if err != nil {
				return fmt.Errorf("check lock of %s: %w", h, err)
			}
			if locked && hl.Holder != user {
				return &BusyError{Host: h, Lock: &hl}
			}
		}
	}
	return nil
}

// takenLocked is the busy error for the first of hosts this process
// holds. l.mu must be held.
func (l *Lifecycle) takenLocked(hosts []string) error {
	for _, h := range hosts {
		hd, ok := l.held[h]
		if !ok {
			continue
		}
		if hd.what != "" {
			return &BusyError{Host: h, What: hd.what}
		}
		e := &BusyError{Host: h, Holder: nixdeploy.Deployment{ID: hd.id}}
		if r := l.active[hd.id]; r != nil {
			e.Holder = r.dep
		}
		return e
	}
	return nil
}

// Hold keeps hosts busy for an operation that is no deployment (a power
// cycle), in this process, until release is called. what names it for
// people ("a power reset"). A busy host is a *BusyError.
func (l *Lifecycle) Hold(hosts []string, what string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.takenLocked(hosts); err != nil {
		return nil, err
	}
	for _, h := range hosts {
		l.held[h] = hold{what: what}
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, h := range hosts {
			delete(l.held, h)
		}
	}, nil
}

// Running is the deployment running on host in this process, if any.
func (l *Lifecycle) Running(host string) (nixdeploy.Deployment, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	hd, ok := l.held[host]
	if !ok || hd.what != "" || l.active[hd.id] == nil {
		return nixdeploy.Deployment{}, false
	}
	return l.active[hd.id].dep, true
}

// claim takes dep's hosts in this process and in the database, all or
// none.
func (l *Lifecycle) claim(ctx context.Context, dep nixdeploy.Deployment) (*active, error) {
	l.mu.Lock()
	if err := l.takenLocked(dep.Hosts); err != nil {
		l.mu.Unlock()
		var be *BusyError
		if errors.As(err, &be) {
			be.Unstarted = dep.ID
		}
		return nil, err
	}
	if l.closed {
		l.mu.Unlock()
		return nil, nixdeploy.ErrShutdown
	}
	rctx, cancel := context.WithCancelCause(l.ctx)
	r := &active{dep: dep, ctx: rctx, cancel: cancel, done: make(chan struct{})}
	r.dep.State = nixdeploy.StateRunning
	l.active[dep.ID] = r
	for _, h := range dep.Hosts {
		l.held[h] = hold{id: dep.ID}
	}
	l.mu.Unlock()
	if c, ok := l.store.(Claims); ok {
		if err := c.ClaimHosts(ctx, dep.ID, dep.Hosts); err != nil {
			l.release(ctx, r, false)
			var be *BusyError
			if !errors.As(err, &be) && errors.Is(err, nixdeploy.ErrHostBusy) {
				err = &BusyError{Host: dep.Hosts[0], Owner: "another nixdeploy process", Unstarted: dep.ID}
			}
			return nil, err
		}
	}
	return r, nil
}

// release gives dep's hosts back, in the database first so no deployment
// of this process can claim a host in between and lose its row.
func (l *Lifecycle) release(ctx context.Context, r *active, db bool) {
	if c, ok := l.store.(Claims); ok && db {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.ReleaseHosts(ctx, r.dep.ID, r.dep.Hosts); err != nil {
			l.log.Error("release host claims", "deployment", r.dep.ID, "err", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[r.dep.ID] == r {
		delete(l.active, r.dep.ID)
		r.cancel(nil)
	}
	for _, h := range r.dep.Hosts {
		if hd, ok := l.held[h]; ok && hd.id == r.dep.ID && hd.what == "" {
			delete(l.held, h)
		}
	}
}

// start claims dep's hosts, marks it running (the one point at which a
// deployment starts: a conditional update, so a cancel that ended it
// first wins and nothing runs) and runs it in the background. started,
// when not nil, runs once it is marked running and before the presenter
// hears Started. done is closed once its end is recorded and shown.
func (l *Lifecycle) start(ctx context.Context, dep nixdeploy.Deployment, channel, approvedBy string, a *nixdeploy.Approval, started func()) (<-chan struct{}, error) {
	r, err := l.claim(ctx, dep)
	if err != nil {
		l.endUnstarted(ctx, dep, nixdeploy.StateCancelled, err, a, approvedBy)
		return nil, err
	}
	if err := l.begin(ctx, dep.ID); err != nil {
		l.release(ctx, r, true)
		cur, _ := l.store.Deployment(context.WithoutCancel(ctx), dep.ID)
		if cur.ID == 0 {
			cur = dep
		}
		l.notStarted(ctx, cur, err, a, approvedBy)
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		// Shutdown began between the claim and now: do not start.
		l.mu.Unlock()
		l.release(ctx, r, true)
		err := nixdeploy.ErrShutdown
		l.finish(ctx, dep, Result{State: nixdeploy.StateCancelled, Err: err})
		l.notStarted(ctx, dep, err, a, approvedBy)
		return nil, err
	}
	l.work.Add()
	l.mu.Unlock()
	if started != nil {
		started()
	}
	go func() {
		defer l.work.Done()
		l.execute(r, channel, approvedBy)
	}()
	return r.done, nil
}

// begin moves a queued or approved deployment to running.
func (l *Lifecycle) begin(ctx context.Context, id int64) error {
	ctx = context.WithoutCancel(ctx)
	err := l.store.SetState(ctx, id, nixdeploy.StateRunning)
	if err == nil {
		return nil
	}
	if errors.Is(err, nixdeploy.ErrNotFound) {
		if cur, gerr := l.store.Deployment(ctx, id); gerr == nil && cur.State.Final() {
			l.log.Info("deployment ended before it started", "deployment", id, "state", cur.State)
			return &NotStartedError{ID: id, State: cur.State}
		}
	}
	return fmt.Errorf("start deployment %d: %w", id, err)
}

// endUnstarted ends a deployment that never ran, with the sentence of
// why, and tells the presenter (with a, the approval it had, if any).
func (l *Lifecycle) endUnstarted(ctx context.Context, dep nixdeploy.Deployment, st nixdeploy.State, why error, a *nixdeploy.Approval, by string) {
	ctx = context.WithoutCancel(ctx)
	p := l.present()
	text := p.Sentence(Result{State: st, Err: why})
	if err := l.store.Finish(ctx, dep.ID, st, 0, text); err != nil && !errors.Is(err, nixdeploy.ErrNotFound) {
		l.log.Error("finish deployment", "deployment", dep.ID, "err", err)
	}
	l.audit(ctx, "nixdeploy", "not-started", dep.ID, text)
	dep.State, dep.Error = st, text
	l.notStarted(ctx, dep, why, a, by)
}

// notStarted tells the presenter that dep did not start.
func (l *Lifecycle) notStarted(ctx context.Context, dep nixdeploy.Deployment, why error, a *nixdeploy.Approval, by string) {
	d := Decision{Kind: NotStarted, Deployment: dep, Why: why, By: by, At: l.clock.Now()}
	if a != nil {
		d.Approval = *a
	}
	l.present().Decided(context.WithoutCancel(ctx), d)
}

// finish records the end of a deployment that was started.
func (l *Lifecycle) finish(ctx context.Context, dep nixdeploy.Deployment, res Result) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	text := ""
	if res.Err != nil {
		text = l.present().Sentence(res)
	}
	if err := l.store.Finish(ctx, dep.ID, res.State, res.ExitCode, text); err != nil && !errors.Is(err, nixdeploy.ErrNotFound) {
		l.log.Error("finish deployment", "deployment", dep.ID, "err", err)
	}
}

// execute is one deployment from its Started to its recorded end.
func (l *Lifecycle) execute(r *active, channel, approvedBy string) {
	l.executeWith(r, channel, approvedBy, l.safeRun)
}

// executeWith is execute with run in place of the executor's Run (a
// reattach).
func (l *Lifecycle) executeWith(r *active, channel, approvedBy string, run func(context.Context, nixdeploy.Deployment, nixdeploy.Sink) Result) {
	dep := r.dep
	defer close(r.done)
	runCtx := r.ctx
	defer l.release(runCtx, r, true)
	log := l.log.With("deployment", dep.ID, "action", dep.Action, "hosts", dep.Hosts)

	// Bookkeeping must survive cancellation of the run itself.
	keep, cancelKeep := context.WithCancel(context.WithoutCancel(runCtx))
	defer cancelKeep()

	p := l.present()
	l.audit(keep, "nixdeploy", "started", dep.ID, fmt.Sprintf("%s %s", dep.Action, strings.Join(dep.Hosts, ", ")))
	log.Info("deployment started")
	prog := p.Started(keep, dep, channel, approvedBy)

	res := run(runCtx, dep, prog)

	l.mu.Lock()
	cancelledBy := r.cancelledBy
	r.ended = true
	l.mu.Unlock()
	switch {
	case runCtx.Err() != nil && l.ctx.Err() != nil:
		res.State = nixdeploy.StateInterrupted
		if res.Err == nil {
			res.Err = nixdeploy.ErrShutdown
		}
	case runCtx.Err() != nil:
		res.State = nixdeploy.StateCancelled
	case res.State == "" || !res.State.Final():
		res.State = nixdeploy.StateFailed
	}
	if res.State == nixdeploy.StateSucceeded && res.Err != nil {
		res.State = nixdeploy.StateFailed
	}
	if res.Err != nil {
		log.Warn("deployment ended", "state", res.State, "step", res.Step, "host", res.Host, "exit_code", res.ExitCode, "err", res.Err)
	} else {
		log.Info("deployment ended", "state", res.State)
	}
	l.finish(keep, dep, res)
	actor := "nixdeploy"
	if cancelledBy != "" {
		actor = cancelledBy
	}
	detail := string(res.State)
	if res.Step != "" {
		detail += fmt.Sprintf(" at step %s on %s, exit code %d", res.Step, res.Host, res.ExitCode)
	}
	l.audit(keep, actor, string(res.State), dep.ID, detail)
	fctx, cancelF := context.WithTimeout(keep, finishTimeout)
	defer cancelF()
	end := dep
	end.State = res.State
	prog.Finished(fctx, end, res, cancelledBy)
}

// resultOf is an executor's report and error as a Result.
func resultOf(rep *nixdeploy.Report, err error) Result {
	res := Result{State: nixdeploy.StateSucceeded}
	if rep != nil {
		res.State = rep.State
	}
	if err == nil {
		return res
	}
	if res.State == nixdeploy.StateSucceeded || res.State == "" {
		res.State = nixdeploy.StateFailed
	}
	var se *nixdeploy.StepError
	if errors.As(err, &se) {
		res.Host, res.Step, res.ExitCode = se.Host, se.Step, se.ExitCode
	}
	res.Err = err
	return res
}

// safeRun calls the executor, turning a panic into a failed result so one
// bad deployment cannot take the process down.
func (l *Lifecycle) safeRun(ctx context.Context, dep nixdeploy.Deployment, sink nixdeploy.Sink) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			l.log.Error("executor panicked", "deployment", dep.ID, "panic", fmt.Sprint(p))
			res = Result{State: nixdeploy.StateFailed, ExitCode: -1, Err: fmt.Errorf("deployer panic: %v", p)}
		}
	}()
	res = resultOf(l.exec.Run(ctx, &dep, sink))
	res.Redacted = dep.Error
	return res
}

// Run takes a deployment from the terminal through its whole life: it
// checks it can be planned and claims the hosts (an unknown or busy host
// stores nothing), creates, starts and runs it in the caller's goroutine,
// and records its end with the executor's redacted text. The report is
// returned whenever it ran.
func (l *Lifecycle) Run(ctx context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	if c, ok := l.exec.(Checker); ok {
		if err := c.Check(*dep); err != nil {
			return nil, err
		}
	}
	c, claims := l.store.(Claims)
	if claims {
		if err := c.ClaimHosts(ctx, 0, dep.Hosts); err != nil {
			return nil, err
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := c.ReleaseHosts(rctx, dep.ID, dep.Hosts); err != nil {
				l.log.Error("release host claims", "deployment", dep.ID, "err", err)
			}
		}()
	}
	if dep.Source == "" {
		dep.Source = nixdeploy.SourceCLI
	}
	dep.State = nixdeploy.StateQueued
	if err := l.store.CreateDeployment(ctx, dep); err != nil {
		return nil, fmt.Errorf("record the deployment: %w", err)
	}
	if claims {
		// The claim of a deployment being created moves to its id.
		if err := c.ClaimHosts(ctx, dep.ID, dep.Hosts); err != nil {
			return nil, err
		}
	}
	if err := l.begin(ctx, dep.ID); err != nil {
		return nil, err
	}
	dep.State = nixdeploy.StateRunning
	rep, err := l.exec.Run(ctx, dep, sinks...)
	// A run that happened leaves its exit code and its error text,
	// redacted, on dep; one that never began has only its error (no
	// output was read yet).
	state, code, text := nixdeploy.StateSucceeded, 0, ""
	switch {
	case rep != nil:
		state, code, text = rep.State, dep.ExitCode, dep.Error
	case err != nil:
		state, code, text = nixdeploy.StateFailed, 1, err.Error()
	}
	if state == "" || !state.Final() {
		state = nixdeploy.StateFailed
	}
	dep.State, dep.ExitCode, dep.Error = state, code, text
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if ferr := l.store.Finish(fctx, dep.ID, state, code, text); ferr != nil {
		return rep, errors.Join(err, fmt.Errorf("record the end of deployment %d: %w", dep.ID, ferr))
	}
	return rep, err
}

// Shown records where deployment id's status message is, for the
// presenter; the next process finds it there after a restart.
func (l *Lifecycle) Shown(ctx context.Context, id int64, channel, ts string) error {
	return l.store.SetMessage(context.WithoutCancel(ctx), id, channel, ts)
}

func (l *Lifecycle) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}
