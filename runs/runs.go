// Package runs owns the life of a deployment: it is the one writer of
// deployment and approval state, and the one place that knows which
// hosts are busy. Its surface is a handful of whole operations:
//
//   - Submit: check a request, store it, claim its hosts and start it, or
//     (destructive) pin it, bind a pending approval to the executor's plan
//     fingerprint and have it shown;
//   - Approve and Reject: decide a pending approval (no self-approval,
//     before expiry, with the plan's fingerprint unchanged; two approvers
//     when the config asks for them), then start what was approved;
//   - Cancel: stop a running deployment, or end one that has not started;
//   - Recover: at start, re-arm the expiry of pending approvals and hand
//     deployments a dead process left to an executor that can reattach;
//   - Shutdown: take no more work, let runs finish within a grace period,
//     interrupt the rest;
//   - Run: a terminal deployment from check to recorded end (nixdeploy
//     deploy).
//
// Every transition that can race (a start and a cancel, two decisions)
// is a conditional update in the store, so only the first is recorded.
// The executor (*deployer.Deployer) only runs steps and writes their
// results and the log. The chat adapter (bot/) is told what happened
// through a Presenter and words every error runs returns.
package runs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/work"
)

// Store is the part of the database a lifecycle reads and writes; *db.DB
// satisfies it.
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
	PendingApprovals(ctx context.Context) ([]nixdeploy.Approval, error)
	Audit(ctx context.Context, e nixdeploy.AuditEvent) error
}

// Claims is what a Store may offer to share host exclusion with every
// process on the same database (*db.DB does): a claim is a row with an
// owner whose lease the owner renews, taken for all hosts or none.
type Claims interface {
	ClaimHosts(ctx context.Context, id int64, hosts []string) error
	ReleaseHosts(ctx context.Context, id int64, hosts []string) error
	// HostClaim is the live claim on host by any process, with its owner
	// as people read it.
	HostClaim(ctx context.Context, host string) (id int64, owner string, ok bool, err error)
}

// Locks is what a Store may offer for manual host locks ("/nixdeploy
// lock"); *db.DB does. A host locked by someone other than the requester
// is busy.
type Locks interface {
	HostLockOf(ctx context.Context, host string) (nixdeploy.HostLock, bool, error)
}

// Executor runs a stored, started deployment; *deployer.Deployer
// satisfies it. It returns a report whenever the deployment ran, and
// writes no deployment state. Cancelling ctx cancels the run (the
// deployer kills the remote process group); a cause of
// nixdeploy.ErrShutdown makes it interrupted rather than cancelled.
type Executor interface {
	Run(ctx context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error)
}

// Checker is what an Executor may offer to refuse a request that cannot
// be planned (unknown host, an action without a plan) before anything is
// stored.
type Checker interface {
	Check(dep nixdeploy.Deployment) error
}

// Fingerprinter is what an Executor offers to bind approvals: a digest of
// every step it would run for dep (argv, host, address, disk, action and
// the locked revisions). A destructive request needs it: the approval is
// bound to the plan that runs and to nothing else.
type Fingerprinter interface {
	Fingerprint(dep nixdeploy.Deployment) (string, error)
}

// Resolver is what an Executor may offer to pin a destructive request
// before it is approved: the flakes' locked revisions and the disks.
type Resolver interface {
	Resolve(ctx context.Context, dep nixdeploy.Deployment) (*nixdeploy.Lock, error)
}

// Reattacher is what an Executor may offer to take over a deployment a
// dead process left running (its supervised steps go on on the runner).
// Recover calls it instead of leaving such a deployment interrupted.
type Reattacher interface {
	Reattach(ctx context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error)
}

// ReattachStore is what a Store may offer for Recover to find the
// deployments whose long step a dead process left running on the runner
// (*db.DB does): Reattachable lists them, and Adopt makes this process
// their owner, once (another live process's adoption wins).
type ReattachStore interface {
	Reattachable(ctx context.Context) ([]nixdeploy.Deployment, error)
	Adopt(ctx context.Context, id int64) error
}

// Result is how a deployment run ended, as the presenter shows it.
type Result struct {
	// State is StateSucceeded, StateFailed, StateCancelled or
	// StateInterrupted.
	State    nixdeploy.State
	ExitCode int
	// Host and Step name where it failed.
	Host string
	Step string
	// Err says why it failed, for the log; people read
	// Presenter.Sentence of it.
	Err error
	// Redacted is the executor's own one-line text of the failure, with
	// secrets removed; a lifecycle without a presenter records it.
	Redacted string
}

// Presenter shows people what the lifecycle did; the bot implements it.
// Its methods are called without any lock of the lifecycle held, and may
// block on the network (each call has its own bounded context).
type Presenter interface {
	// AskApproval posts the request for approval a of dep to channel and
	// returns the message's id. An error voids the approval: nobody could
	// see it.
	AskApproval(ctx context.Context, dep nixdeploy.Deployment, a nixdeploy.Approval, channel string) (ts string, err error)
	// Decided tells that a pending approval, or the deployment it guards,
	// was decided (see DecisionKind).
	Decided(ctx context.Context, d Decision)
	// Started is called once dep runs; the returned Progress gets its
	// lines and its end. approvedBy is empty without an approval.
	Started(ctx context.Context, dep nixdeploy.Deployment, channel, approvedBy string) Progress
	// Sentence words an error for people: one sentence, no Go error
	// chain. It is what the record of the deployment keeps.
	Sentence(res Result) string
}

// Progress is one running deployment as the presenter shows it.
type Progress interface {
	nixdeploy.Sink
	// Finished is its end, recorded already; cancelledBy is who
	// cancelled it, if anyone did.
	Finished(ctx context.Context, dep nixdeploy.Deployment, res Result, cancelledBy string)
}

// DecisionKind is what became of an approval.
type DecisionKind string

// Decision kinds.
const (
	// Approved: the deployment started (Presenter.Started follows).
	Approved DecisionKind = "approved"
	// NotStarted: approved, but it could not start (Why says why).
	NotStarted DecisionKind = "not-started"
	Rejected   DecisionKind = "rejected"
	Expired    DecisionKind = "expired"
	// Void: the plan changed since the request, so the approval no
	// longer applies.
	Void      DecisionKind = "void"
	Cancelled DecisionKind = "cancelled"
	// Unposted: the approval message could not be posted.
	Unposted DecisionKind = "unposted"
)

// Decision is an approval's end.
type Decision struct {
	Kind       DecisionKind
	Approval   nixdeploy.Approval
	Deployment nixdeploy.Deployment
	// By is who decided; empty for nixdeploy itself.
	By string
	// Why is the reason a NotStarted or Unposted deployment did not run.
	Why error
	// At is when it was decided.
	At time.Time
}

// Clock is the time source of expiry timers; the bot's Clock satisfies
// it.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Options configure a Lifecycle. Store is required; Executor for
// anything that runs.
type Options struct {
	Store    Store
	Executor Executor
	// Config is the config decisions are made against (approval TTL, the
	// multi-host install policy), read at each decision so a reload
	// applies; nil: approvals never need two approvers and last 15 min.
	Config func() *nixdeploy.Config
	// Presenter may be set later with SetPresenter (the bot is built
	// after its lifecycle); without one nothing is shown.
	Presenter Presenter
	Clock     Clock
	Logger    *slog.Logger
}

// Lifecycle owns deployments from request to recorded end.
type Lifecycle struct {
	store Store
	exec  Executor
	cfg   func() *nixdeploy.Config
	clock Clock
	log   *slog.Logger

	// ctx is the parent of every run: Shutdown cancels it with
	// nixdeploy.ErrShutdown as the cause.
	ctx    context.Context
	cancel context.CancelCauseFunc
	work   work.Tracker

	mu        sync.Mutex
	presenter Presenter
	closed    bool
	active    map[int64]*active     // running in this process
	held      map[string]hold       // host → what holds it in this process
	timers    map[int64]func() bool // approval id → stop its expiry timer
	first     map[int64]string      // approval id → first of two approvers
}

// active is a deployment running in this process.
type active struct {
	dep nixdeploy.Deployment
	// ctx is the run's own context, a child of the lifecycle's.
	ctx         context.Context
	cancel      context.CancelCauseFunc
	cancelledBy string
	// ended is set once the executor returned; what remains is recording
	// and showing the outcome, which a shutdown does not interrupt.
	ended bool
	done  chan struct{}
}

// hold is what keeps a host busy in this process: a deployment (id) or
// another operation (what).
type hold struct {
	id   int64
	what string
}

// New returns a lifecycle over store that runs deployments with exec.
func New(store Store, exec Executor) *Lifecycle {
	return NewWith(Options{Store: store, Executor: exec})
}

// NewWith returns a lifecycle configured by o.
func NewWith(o Options) *Lifecycle {
	l := &Lifecycle{
		store: o.Store, exec: o.Executor, cfg: o.Config, clock: o.Clock, log: o.Logger,
		presenter: o.Presenter,
		active:    map[int64]*active{},
		held:      map[string]hold{},
		timers:    map[int64]func() bool{},
		first:     map[int64]string{},
	}
	if l.clock == nil {
		l.clock = realClock{}
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.cfg == nil {
		l.cfg = func() *nixdeploy.Config { return &nixdeploy.Config{} }
	}
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	return l
}

// SetPresenter sets who is told what happens; the bot calls it when it is
// built on this lifecycle.
func (l *Lifecycle) SetPresenter(p Presenter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.presenter = p
}

func (l *Lifecycle) present() Presenter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.presenter == nil {
		return quiet{}
	}
	return l.presenter
}

// quiet is the presenter of a lifecycle nobody watches.
type quiet struct{}

func (quiet) AskApproval(context.Context, nixdeploy.Deployment, nixdeploy.Approval, string) (string, error) {
	return "", nil
}
func (quiet) Decided(context.Context, Decision) {}
func (quiet) Started(context.Context, nixdeploy.Deployment, string, string) Progress {
	return quietProgress{}
}
func (quiet) Sentence(res Result) string {
	switch {
	case res.Err == nil:
		return ""
	case res.Redacted != "":
		return res.Redacted
	}
	return res.Err.Error()
}

type quietProgress struct{}

func (quietProgress) Line(nixdeploy.LogLine)                                         {}
func (quietProgress) Finished(context.Context, nixdeploy.Deployment, Result, string) {}

// Errors of the operations; the bot words each (bot/wording.go).
var (
	// ErrNotStarted is a deployment that ended (a cancel won) before it
	// could start.
	ErrNotStarted = errors.New("deployment ended before it started")
	// ErrSelfApproval is an approval by the requester.
	ErrSelfApproval = fmt.Errorf("the requester cannot approve their own request: %w", nixdeploy.ErrUnauthorized)
	// ErrExpired is an approval after its expiry; the approval is then
	// ended as expired.
	ErrExpired = errors.New("approval expired")
	// ErrDecided is a decision on an approval that was decided already;
	// the first decision stands.
	ErrDecided = errors.New("approval already decided")
	// ErrFirstOfTwo is the first of two needed approvals: noted, nothing
	// starts yet.
	ErrFirstOfTwo = errors.New("first of two approvals")
	// ErrSameApprover is the first approver approving again.
	ErrSameApprover = fmt.Errorf("a second, different approver must approve: %w", nixdeploy.ErrUnauthorized)
	// ErrEnded is a cancel of a deployment that already ended.
	ErrEnded = errors.New("deployment already ended")
	// ErrElsewhere is a cancel of a deployment another process runs.
	ErrElsewhere = fmt.Errorf("deployment runs in another process: %w", nixdeploy.ErrHostBusy)
	// ErrNoFingerprint is a destructive request on an executor that
	// cannot fingerprint its plan: nothing to bind an approval to.
	ErrNoFingerprint = errors.New("the executor has no plan fingerprint to bind an approval to")
)

// BusyError is a host taken by a deployment (here or in another process
// sharing the database), an operation of this process, or a manual lock
// of someone else. It wraps nixdeploy.ErrHostBusy.
type BusyError struct {
	Host string
	// Holder is the deployment holding it, with ID 0 when unknown.
	Holder nixdeploy.Deployment
	// Owner is the process holding it, when it is another one.
	Owner string
	// What is the operation holding it, for one that is no deployment.
	What string
	// Lock is the manual lock on it.
	Lock *nixdeploy.HostLock
	// Unstarted is the deployment that was stored and then not started
	// because of this (0: refused before anything was stored).
	Unstarted int64
}

func (e *BusyError) Error() string {
	switch {
	case e.Lock != nil:
		return fmt.Sprintf("%s is locked by %s", e.Host, e.Lock.Holder)
	case e.What != "":
		return fmt.Sprintf("%s is busy: %s", e.Host, e.What)
	case e.Owner != "":
		return fmt.Sprintf("%s is busy with deployment %d, run by %s", e.Host, e.Holder.ID, e.Owner)
	}
	return fmt.Sprintf("%s is busy with deployment %d", e.Host, e.Holder.ID)
}

func (e *BusyError) Unwrap() error { return nixdeploy.ErrHostBusy }

// NotStartedError is a deployment that ended before it could start; it
// wraps ErrNotStarted.
type NotStartedError struct {
	ID    int64
	State nixdeploy.State
}

func (e *NotStartedError) Error() string {
	return fmt.Sprintf("deployment %d was not started: it was %s first", e.ID, e.State)
}

func (e *NotStartedError) Unwrap() error { return ErrNotStarted }

// ResolveError is a destructive request whose plan could not be pinned
// before the approval (the flake did not evaluate, the runner was
// unreachable).
type ResolveError struct{ Err error }

func (e *ResolveError) Error() string { return "resolve what would run: " + e.Err.Error() }
func (e *ResolveError) Unwrap() error { return e.Err }

// audit records a decision; losing an audit row must not undo the
// decision, so a failure is logged loudly instead.
func (l *Lifecycle) audit(ctx context.Context, actor, kind string, depID int64, detail string) {
	e := nixdeploy.AuditEvent{Time: l.clock.Now().UTC(), Actor: actor, Kind: kind, DeploymentID: depID, Detail: detail}
	if err := l.store.Audit(context.WithoutCancel(ctx), e); err != nil {
		l.log.Error("audit", "kind", kind, "actor", actor, "deployment", depID, "err", err)
	}
}

func utc(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// Wait blocks until no deployment runs and no expiry is being decided in
// this process, or ctx ends; tests and the terminal use it to let things
// settle.
func (l *Lifecycle) Wait(ctx context.Context) error { return l.work.Wait(ctx) }

// Idle reports whether nothing runs in the background right now.
func (l *Lifecycle) Idle() bool {
	return l.work.Idle()
}
