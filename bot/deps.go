package bot

import (
	"context"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Store is the part of *db.DB the bot reads (and its audit trail and
// event dedupe); deployment and approval state is written only by the
// lifecycle (runs).
type Store interface {
	Deployment(ctx context.Context, id int64) (nixdeploy.Deployment, error)
	Deployments(ctx context.Context, host string, limit int) ([]nixdeploy.Deployment, error)
	CurrentSystem(ctx context.Context, host string) (string, time.Time, error)

	ApprovalByMessage(ctx context.Context, channel, ts string) (nixdeploy.Approval, error)
	PendingApprovals(ctx context.Context) ([]nixdeploy.Approval, error)

	Audit(ctx context.Context, e nixdeploy.AuditEvent) error
	FirstSeen(ctx context.Context, eventID string) (bool, error)
	EachLog(ctx context.Context, deploymentID int64, fn func(nixdeploy.LogLine) error) error
}

// Sink receives a deployment's output while it runs (nixdeploy.Sink).
// The deployer calls Line for every stored (redacted) line, including its
// own event lines for step boundaries; nixos-anywhere's "### … ###"
// markers arrive as ordinary stdout lines. Line must not block: the
// Streamer only records the line and wakes its updater.
type Sink = nixdeploy.Sink

// Deployer runs deployments (runs.Executor); *deployer.Deployer satisfies
// it directly, and also offers what runs looks for (Check, Resolve,
// Fingerprint: a destructive request needs the plan fingerprint). It
// stores every log line of a deployment (the bot reads them back with
// Store.EachLog for the uploaded log) and passes each one to the sinks as
// well. Run returns when the deployment ended, with a report whenever it
// ran; cancelling ctx cancels it. A failure is a *nixdeploy.StepError; a
// host taken by another deployment is an error wrapping
// nixdeploy.ErrHostBusy.
type Deployer interface {
	Run(ctx context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error)
}

// Unlocker is what a Deployer may offer for "/nixdeploy unlock-disk HOST":
// the host's disk passphrase sent to its initrd SSH server.
type Unlocker interface {
	Unlock(ctx context.Context, host string, sinks ...nixdeploy.Sink) error
}

// HostReader is what a Deployer may offer for the drift board
// ("/nixdeploy status"); *deployer.Deployer satisfies it. ReadHosts reads
// each host's running and booted system and the system the flake's current
// revision expects (every host when none are named); a host it cannot read
// is a reading with drift unknown and the reason, only an unknown host
// name is an error.
type HostReader interface {
	ReadHosts(ctx context.Context, hosts []string) ([]nixdeploy.HostReading, error)
}

// Locks keeps the manual host locks ("/nixdeploy lock"); *db.DB satisfies
// it. LockHost fails with an error wrapping nixdeploy.ErrLocked (itself an
// ErrHostBusy) when someone else holds a live lock.
type Locks interface {
	LockHost(ctx context.Context, l nixdeploy.HostLock) error
	UnlockHost(ctx context.Context, host string) (bool, error)
	HostLockOf(ctx context.Context, host string) (nixdeploy.HostLock, bool, error)
}

// Schedules is the scheduler as the bot drives it; *schedules.Scheduler
// satisfies it directly.
type Schedules interface {
	List(ctx context.Context) ([]nixdeploy.ScheduleStatus, error)
	Pause(ctx context.Context, name, by string) error
	Resume(ctx context.Context, name, by string) error
	RunNow(ctx context.Context, name, by string) (int64, error)
}

// KeyReport is the outcome of a key preflight (root vocabulary).
type KeyReport = nixdeploy.KeyReport

// KeyChecker runs the key preflight ("/nixdeploy keys check");
// keys.Checker satisfies it.
type KeyChecker interface {
	CheckKeys(ctx context.Context, hosts []string) (KeyReport, error)
}
