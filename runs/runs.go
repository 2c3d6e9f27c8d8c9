// Package runs owns the life of a deployment: it creates, starts and
// finishes deployments and ends those that never start. The executor
// (*deployer.Deployer) only runs steps and writes their results and the
// log; the state of a deployment is written here.
//
// Today the terminal path (nixdeploy deploy) goes through Lifecycle.Run,
// and the bot uses Start and Cancel for the two transitions that race (a
// start and a cancel); the bot still creates chat deployments and decides
// approvals itself (see ARCHITECTURE.md, "Known seams").
package runs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Store is the part of the database a lifecycle writes; *db.DB satisfies
// it.
type Store interface {
	CreateDeployment(ctx context.Context, d *nixdeploy.Deployment) error
	Deployment(ctx context.Context, id int64) (nixdeploy.Deployment, error)
	SetState(ctx context.Context, id int64, state nixdeploy.State) error
	Finish(ctx context.Context, id int64, state nixdeploy.State, exitCode int, errText string) error
	EndUnstarted(ctx context.Context, id int64, state nixdeploy.State, errText string) error
}

// Claims is what a Store may offer to share host exclusion with every
// process on the same database (*db.DB does).
type Claims interface {
	ClaimHosts(ctx context.Context, id int64, hosts []string) error
	ReleaseHosts(ctx context.Context, id int64, hosts []string) error
}

// Executor runs a stored, started deployment; *deployer.Deployer
// satisfies it. It returns a report whenever the deployment ran, and
// writes no deployment state.
type Executor interface {
	// Check reports whether dep can be planned at all (known hosts, an
	// action with a plan), before anything is stored.
	Check(dep nixdeploy.Deployment) error
	Run(ctx context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error)
}

// Lifecycle is the one writer of deployment state.
type Lifecycle struct {
	store Store
	exec  Executor
}

// New returns a lifecycle over store that runs deployments with exec.
func New(store Store, exec Executor) *Lifecycle { return &Lifecycle{store: store, exec: exec} }

// ErrNotStarted is a deployment that ended (a cancel won) before it could
// start.
var ErrNotStarted = errors.New("deployment ended before it started")

// Start moves a queued or approved deployment to running: a conditional
// update, so of a start and a cancel only the first wins. A deployment
// that already ended is an error wrapping ErrNotStarted, with its state.
func (l *Lifecycle) Start(ctx context.Context, id int64) (nixdeploy.Deployment, error) {
	ctx = context.WithoutCancel(ctx)
	err := l.store.SetState(ctx, id, nixdeploy.StateRunning)
	if err == nil {
		return nixdeploy.Deployment{}, nil
	}
	if errors.Is(err, nixdeploy.ErrNotFound) {
		if cur, gerr := l.store.Deployment(ctx, id); gerr == nil && cur.State.Final() {
			return cur, fmt.Errorf("deployment %d is %s: %w", id, cur.State, ErrNotStarted)
		}
	}
	return nixdeploy.Deployment{}, fmt.Errorf("start deployment %d: %w", id, err)
}

// Cancel ends a deployment that has not started, as cancelled by by. It
// reports false when the deployment is running or already ended (then
// nothing changed): a cancel and a start are never both recorded.
func (l *Lifecycle) Cancel(ctx context.Context, id int64, by string) (bool, error) {
	err := l.store.EndUnstarted(ctx, id, nixdeploy.StateCancelled, "cancelled by "+by)
	if errors.Is(err, nixdeploy.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Finish records the end of a deployment, with the sentence people read.
func (l *Lifecycle) Finish(ctx context.Context, id int64, state nixdeploy.State, exitCode int, sentence string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return l.store.Finish(ctx, id, state, exitCode, sentence)
}

// Run takes a deployment from the terminal through its whole life: it
// checks it can be planned and claims the hosts (an unknown or busy host
// stores nothing), creates, starts and runs
// it, and records its end. The report is returned whenever it ran.
func (l *Lifecycle) Run(ctx context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	if err := l.exec.Check(*dep); err != nil {
		return nil, err
	}
	if c, ok := l.store.(Claims); ok {
		if err := c.ClaimHosts(ctx, 0, dep.Hosts); err != nil {
			return nil, err
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			c.ReleaseHosts(rctx, dep.ID, dep.Hosts) // the executor's release usually came first
		}()
	}
	if dep.Source == "" {
		dep.Source = nixdeploy.SourceCLI
	}
	dep.State = nixdeploy.StateQueued
	if err := l.store.CreateDeployment(ctx, dep); err != nil {
		return nil, fmt.Errorf("record the deployment: %w", err)
	}
	if _, err := l.Start(ctx, dep.ID); err != nil {
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
	if ferr := l.Finish(ctx, dep.ID, state, code, text); ferr != nil {
		return rep, errors.Join(err, fmt.Errorf("record the end of deployment %d: %w", dep.ID, ferr))
	}
	return rep, err
}
