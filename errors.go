package nixdeploy

import "errors"

// Sentinel errors shared by the packages. Callers test them with errors.Is;
// bot/ turns them into one sentence for the user.
var (
	ErrUnknownHost  = errors.New("unknown host")
	ErrHostBusy     = errors.New("host is busy")
	ErrUnauthorized = errors.New("not authorized")
	ErrNotFound     = errors.New("not found")
	ErrInvalidInput = errors.New("invalid input")
	// ErrShutdown is the cause of work stopped because nixdeploy is
	// shutting down (SIGTERM): a deployment it stops is interrupted, not
	// cancelled, since nobody asked for it to stop.
	ErrShutdown = errors.New("nixdeploy is shutting down")
	// ErrLocked is a host someone locked by hand ("/nixdeploy lock"). It
	// is also an ErrHostBusy: a locked host is busy for every request.
	ErrLocked error = lockedError{}
)

// The kinds of deployment failure the deployer reports, for errors.Is.
// User wording for each is in one place: bot.DeployErrorForUsers.
var (
	// ErrHostKeyMismatch: a server presented a key other than its pinned
	// one. Nothing was sent to it.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrAuth: the server refused the bot's SSH key.
	ErrAuth = errors.New("ssh key refused")
	// ErrConnectionLost: an SSH connection died while a step used it.
	ErrConnectionLost = errors.New("connection lost")
	// ErrRemoteUnknown: the end of a step supervised on the runner could
	// not be learned (the runner stayed unreachable past the outage
	// limit, or its supervisor vanished); the step may still be running.
	ErrRemoteUnknown = errors.New("the outcome of the step on the runner is unknown")
	// ErrStepTimeout is a step stopped by its timeout.
	ErrStepTimeout = errors.New("step timed out")
	// ErrVerify is a deployment whose commands succeeded but whose result
	// is wrong: a degraded system, or /run/current-system not as the
	// action implies. Exit codes alone are never trusted (deploy-rs #214).
	ErrVerify = errors.New("verification failed")
	// ErrPlanChanged: the plan of an approved install is not the one that
	// was approved, so the disk was not touched.
	ErrPlanChanged = errors.New("the plan changed since it was approved")
	// ErrRolledBack: the rollback guard re-activated the host's previous
	// system because the bot did not disarm it in time (the host could
	// not be reached, or a health check failed).
	ErrRolledBack = errors.New("rolled back by the guard")
	// ErrCancelled is the cause of a deployment stopped by a person.
	ErrCancelled = errors.New("deployment cancelled")
)

type lockedError struct{}

func (lockedError) Error() string        { return "host is locked" }
func (lockedError) Is(target error) bool { return target == ErrHostBusy }
