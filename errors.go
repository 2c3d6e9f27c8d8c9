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
)
