package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// finishTimeout bounds delivering a deployment's end (final message, log
// upload, DB rows) after its context is gone, e.g. on shutdown.
const finishTimeout = 2 * time.Minute

// startRun claims dep's hosts, marks it running and runs it in the
// background. A deployment that ended before it could start (a cancel won
// the race) is not run; the error says so. started, when not nil, runs
// once the deployment is marked running and before its status message is
// posted (the approval message says "running" first).
func (b *Bot) startRun(ctx context.Context, dep nixdeploy.Deployment, channel, approvedBy string, started func()) error {
	r, err := b.claim(dep)
	if err != nil {
		b.finishUnstarted(ctx, dep, nixdeploy.StateCancelled, err)
		return err
	}
	if err := b.begin(ctx, r); err != nil {
		return err
	}
	if started != nil {
		started()
	}
	if !b.spawn(func(ctx context.Context) { b.execRun(ctx, r, channel, approvedBy) }) {
		b.release(dep.ID)
		err := userf(context.Canceled, "nixdeploy is shutting down; request #%d again once it is back", dep.ID)
		b.finishUnstarted(ctx, dep, nixdeploy.StateCancelled, err)
		return err
	}
	return nil
}

// claim registers dep as in flight unless one of its hosts already is.
func (b *Bot) claim(dep nixdeploy.Deployment) (*run, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.heldErrLocked(dep.Hosts); err != nil {
		return nil, err
	}
	for _, r := range b.runs {
		for _, h := range dep.Hosts {
			if containsHost(r.dep.Hosts, h) {
				return nil, userf(nixdeploy.ErrHostBusy, "%s is busy with deployment #%d (%s by %s); #%d was not started, request it again later",
					h, r.dep.ID, r.dep.Action, mention(r.dep.Requester), dep.ID)
			}
		}
	}
	ctx, cancel := context.WithCancel(b.ctx)
	r := &run{dep: dep, ctx: ctx, cancel: cancel}
	r.dep.State = nixdeploy.StateRunning
	b.runs[dep.ID] = r
	return r, nil
}

// errNotStarted marks a deployment that ended (was cancelled) before it
// could start.
var errNotStarted = errors.New("deployment ended before it started")

// begin marks a claimed deployment running: the one point at which a
// deployment starts, a conditional update in the store, so a cancel that
// ended the deployment first wins and the run never starts.
func (b *Bot) begin(ctx context.Context, r *run) error {
	ctx = context.WithoutCancel(ctx)
	err := b.life.SetState(ctx, r.dep.ID, nixdeploy.StateRunning)
	if err == nil {
		return nil
	}
	b.release(r.dep.ID)
	if errors.Is(err, nixdeploy.ErrNotFound) {
		if cur, gerr := b.store.Deployment(ctx, r.dep.ID); gerr == nil && cur.State.Final() {
			b.log.Info("deployment ended before it started", "deployment", cur.ID, "state", cur.State)
			return userf(errNotStarted, "#%d was not started: it was %s first", cur.ID, cur.State)
		}
	}
	return fmt.Errorf("start deployment %d: %w", r.dep.ID, err)
}

func (b *Bot) release(id int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runs[id]; r != nil {
		r.cancel()
		delete(b.runs, id)
	}
}

// finishUnstarted ends a deployment that never ran.
func (b *Bot) finishUnstarted(ctx context.Context, dep nixdeploy.Deployment, st nixdeploy.State, why error) {
	ctx = context.WithoutCancel(ctx)
	if err := b.life.Finish(ctx, dep.ID, st, 0, UserMessage(why)); err != nil && !errors.Is(err, nixdeploy.ErrNotFound) {
		b.log.Error("finish deployment", "deployment", dep.ID, "err", err)
	}
	b.audit(ctx, "nixdeploy", "not-started", dep.ID, UserMessage(why))
	b.observe(dep, st, 0)
}

// execRun is one deployment from its status message to its uploaded log.
func (b *Bot) execRun(_ context.Context, r *run, channel, approvedBy string) {
	dep := r.dep
	runCtx := r.ctx
	defer b.release(dep.ID)
	log := b.log.With("deployment", dep.ID, "action", dep.Action, "hosts", dep.Hosts)

	// Bookkeeping must survive cancellation of the run itself.
	keep, cancelKeep := context.WithCancel(context.WithoutCancel(runCtx))
	defer cancelKeep()

	st := newStreamer(b, dep, channel, approvedBy)
	st.post(keep)
	b.audit(keep, "nixdeploy", "started", dep.ID, fmt.Sprintf("%s %s", dep.Action, hostsText(dep.Hosts)))
	log.Info("deployment started")

	done := make(chan struct{})
	updaterDone := make(chan struct{})
	posted := b.clock.Now()
	go func() {
		defer close(updaterDone)
		st.updates(keep, posted, done)
	}()

	res := b.safeRun(runCtx, dep, st)
	if res.Err != nil {
		res.Err = deployErrorForUsers(res.Err, res)
	}
	close(done)
	<-updaterDone

	b.mu.Lock()
	cancelledBy := r.cancelledBy
	r.ended = true
	b.mu.Unlock()
	switch {
	case runCtx.Err() != nil && b.ctx.Err() != nil:
		res.State = nixdeploy.StateInterrupted
		if res.Err == nil {
			res.Err = userf(context.Canceled, "nixdeploy shut down while this deployment was running; check the host and run it again")
		}
	case runCtx.Err() != nil:
		res.State = nixdeploy.StateCancelled
	case res.State == "" || !res.State.Final():
		res.State = nixdeploy.StateFailed
	}
	if res.State == nixdeploy.StateSucceeded && res.Err != nil {
		res.State = nixdeploy.StateFailed
	}

	fctx, cancel := context.WithTimeout(keep, finishTimeout)
	defer cancel()
	errText := ""
	if res.Err != nil {
		errText = UserMessage(res.Err)
		log.Warn("deployment ended", "state", res.State, "step", res.Step, "host", res.Host, "exit_code", res.ExitCode, "err", res.Err)
	} else {
		log.Info("deployment ended", "state", res.State)
	}
	if err := b.life.Finish(fctx, dep.ID, res.State, res.ExitCode, errText); err != nil && !errors.Is(err, nixdeploy.ErrNotFound) {
		log.Error("finish deployment", "err", err)
	}
	actor := "nixdeploy"
	if cancelledBy != "" {
		actor = cancelledBy
	}
	detail := string(res.State)
	if res.Step != "" {
		detail += fmt.Sprintf(" at step %s on %s, exit code %d", res.Step, res.Host, res.ExitCode)
	}
	b.audit(fctx, actor, string(res.State), dep.ID, detail)
	b.observe(dep, res.State, b.clock.Now().Sub(st.started))
	st.finish(fctx, res, cancelledBy)
}

// resultOf is a deployer's report and error as the bot shows them.
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

// safeRun calls the deployer, turning a panic into a failed result so one
// bad deployment cannot take the bot down.
func (b *Bot) safeRun(ctx context.Context, dep nixdeploy.Deployment, sink Sink) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			b.log.Error("deployer panicked", "deployment", dep.ID, "panic", fmt.Sprint(p))
			res = Result{State: nixdeploy.StateFailed, ExitCode: -1, Err: fmt.Errorf("deployer panic: %v", p)}
		}
	}()
	return resultOf(b.deployer.Run(ctx, &dep, sink))
}
