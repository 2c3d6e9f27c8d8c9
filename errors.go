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
)
