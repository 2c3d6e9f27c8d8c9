package nixdeploy

import "time"

// RemoteStep is a long step (nixos-anywhere, nixos-rebuild) that runs on
// the runner under the deployer's supervisor, recorded so that a process
// started later can find it again: the runner, the run directory and the
// step's process group there, and how far into its output files the
// stored log reaches.
type RemoteStep struct {
	ID           int64
	DeploymentID int64
	Host         string
	Step         string
	// Runner is "local" or the runner's address as the config names it.
	Runner string
	// Dir is the run directory on the runner (the plan's <tmp>); Name the
	// stem of the step's files in it (<Name>.out, .err, .status, .pid,
	// .pgid).
	Dir  string
	Name string
	// PGID is the step's process group on the runner (0 until known).
	PGID int
	// OutOffset and ErrOffset are the byte offsets in <Name>.out and
	// <Name>.err up to which the log is stored: written in the same
	// transaction as the lines they cover.
	OutOffset int64
	ErrOffset int64
	StartedAt time.Time
	Timeout   time.Duration
	// Lock and Before are what the host's run had resolved when the step
	// started (the locked flakes, /run/current-system), so the rest of
	// the plan can carry on after a reattach.
	Lock   *Lock
	Before string
	// State is RemoteRunning until the step's end is known.
	State    RemoteState
	ExitCode int
	EndedAt  time.Time
}

// RemoteState is where a remote step stands, as far as the bot knows.
type RemoteState string

// Remote step states.
const (
	// RemoteRunning: started and not known to have ended. A host with a
	// running remote step cannot be claimed by another deployment.
	RemoteRunning RemoteState = "running"
	// RemoteEnded: the supervisor wrote the step's exit status and the
	// bot read it.
	RemoteEnded RemoteState = "ended"
	// RemoteUnknown: the bot gave up on learning the end (the runner was
	// unreachable, or the supervisor vanished without a status).
	RemoteUnknown RemoteState = "unknown"
)

// LogCursor is how far into one output file of a remote step the stored
// log reaches.
type LogCursor struct {
	RemoteStep int64
	Stream     Stream
	Offset     int64
}
