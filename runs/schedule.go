package runs

import (
	"context"
	"errors"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// DeployHost runs one host of a scheduled run, so the lifecycle is the
// scheduler's schedules.Deployer as it is: Submit, then wait for the
// recorded end. A busy or locked host is an error wrapping
// nixdeploy.ErrHostBusy (the scheduler waits and retries), worded by the
// presenter; a failure's Err is the sentence the record keeps, never a Go
// error chain.
func (l *Lifecycle) DeployHost(ctx context.Context, req nixdeploy.HostRequest) (nixdeploy.HostResult, error) {
	by := "schedule:" + req.Schedule
	if req.By != "" {
		by = req.By
	}
	// The scheduler's context ends when it stops, at shutdown; the host's
	// deployment then gets the grace period like any other, so it runs
	// without that cancel.
	sub, err := l.Submit(context.WithoutCancel(ctx), Request{Request: nixdeploy.Request{
		Action: req.Action, Hosts: []string{req.Host}, Requester: by, Source: nixdeploy.SourceSchedule, Recover: req.Recover, Guard: req.Guard,
	}})
	if errors.Is(err, nixdeploy.ErrShutdown) {
		// Refused because of a shutdown: the scheduler is being stopped
		// too, and waiting for that makes it record the host as
		// interrupted rather than failed.
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	if err != nil {
		return nixdeploy.HostResult{DeploymentID: sub.Deployment.ID}, &worded{text: l.present().Sentence(Result{Err: err}), err: err}
	}
	<-sub.Done
	dep, err := l.store.Deployment(context.WithoutCancel(ctx), sub.Deployment.ID)
	if err != nil {
		return nixdeploy.HostResult{DeploymentID: sub.Deployment.ID}, err
	}
	res := nixdeploy.HostResult{DeploymentID: dep.ID, State: dep.State, Revision: dep.Revision}
	if dep.State == nixdeploy.StateSucceeded {
		res.Note = l.recoveryNote(ctx, dep.ID)
	}
	if dep.State != nixdeploy.StateSucceeded {
		why := dep.Error
		if why == "" {
			why = string(dep.State)
		}
		res.Err = errors.New(why)
	}
	return res, nil
}

// worded is an error whose text is the presenter's sentence; it still
// matches what it wraps.
type worded struct {
	text string
	err  error
}

func (w *worded) Error() string       { return w.text }
func (w *worded) Unwrap() error       { return w.err }
func (w *worded) UserMessage() string { return w.text }
