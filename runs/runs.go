// Package runs owns the life of a deployment: it is the one writer of
// deployment and approval state. It creates, starts and finishes
// deployments, ends those that never start, and records approval
// decisions; every transition that can race is a conditional update in
// the store, so only the first is recorded. The executor
// (*deployer.Deployer) only runs steps and writes their results and the
// log.
//
// The terminal path (nixdeploy deploy) runs a whole deployment with
// Lifecycle.Run. The bot keeps the policy of chat requests (who may ask,
// who may approve, what to tell whom) and calls the Lifecycle for each
// write; the database recovers what a dead process left (db.Open).
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
	SetMessage(ctx context.Context, id int64, channel, ts string) error
	SetLock(ctx context.Context, id int64, l *nixdeploy.Lock) error
	CreateApproval(ctx context.Context, a *nixdeploy.Approval) error
	SetApprovalMessage(ctx context.Context, id int64, channel, ts string) error
	DecideApproval(ctx context.Context, id int64, state nixdeploy.ApprovalState, by string) (bool, error)
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
// exec may be nil when Run is not used (the bot runs chat deployments
// through its own deployer and records them here).
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

// CreateDeployment stores a new request (queued, or awaiting approval).
func (l *Lifecycle) CreateDeployment(ctx context.Context, d *nixdeploy.Deployment) error {
	return l.store.CreateDeployment(ctx, d)
}

// SetState moves a live deployment on: to running (stamping its start and
// making this process its owner), or to a final state an approval decision
// gave it. An ended deployment is a not-found error and is not changed.
func (l *Lifecycle) SetState(ctx context.Context, id int64, state nixdeploy.State) error {
	return l.store.SetState(ctx, id, state)
}

// EndUnstarted ends a deployment only if it has not started.
func (l *Lifecycle) EndUnstarted(ctx context.Context, id int64, state nixdeploy.State, why string) error {
	return l.store.EndUnstarted(ctx, id, state, why)
}

// SetMessage records where a deployment's status message is.
func (l *Lifecycle) SetMessage(ctx context.Context, id int64, channel, ts string) error {
	return l.store.SetMessage(ctx, id, channel, ts)
}

// SetLock keeps the lock an install is approved with, so the run uses it.
func (l *Lifecycle) SetLock(ctx context.Context, id int64, lock *nixdeploy.Lock) error {
	return l.store.SetLock(ctx, id, lock)
}

// CreateApproval stores a pending approval.
func (l *Lifecycle) CreateApproval(ctx context.Context, a *nixdeploy.Approval) error {
	return l.store.CreateApproval(ctx, a)
}

// SetApprovalMessage records where an approval's message is.
func (l *Lifecycle) SetApprovalMessage(ctx context.Context, id int64, channel, ts string) error {
	return l.store.SetApprovalMessage(ctx, id, channel, ts)
}

// DecideApproval decides a pending approval once; it reports false when it
// was decided already (the first decision stands).
func (l *Lifecycle) DecideApproval(ctx context.Context, id int64, state nixdeploy.ApprovalState, by string) (bool, error) {
	return l.store.DecideApproval(ctx, id, state, by)
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
