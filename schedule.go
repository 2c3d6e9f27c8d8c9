package nixdeploy

import "time"

// The shared records of schedules and manual host locks: db stores them,
// schedules writes and reads them, internal/ops and bot show them.

// ScheduleState is the persisted runtime state of a schedule.
type ScheduleState struct {
	Name      string
	Paused    bool
	PausedBy  string
	ChangedAt time.Time
}

// ScheduleRun is one run (or recorded skip) of a schedule.
type ScheduleRun struct {
	ID          int64
	Schedule    string
	Trigger     string // cron, manual, catch-up
	ScheduledAt time.Time
	StartedAt   time.Time
	EndedAt     time.Time
	Outcome     Outcome // running, succeeded, failed, skipped, interrupted
	Detail      string
	Hosts       []ScheduleRunHost
}

// ScheduleRunHost is one host's outcome within a run.
type ScheduleRunHost struct {
	Host         string
	Outcome      Outcome // succeeded, failed, skipped, untouched
	DeploymentID int64
	Duration     time.Duration
	Detail       string
}

// HostRequest asks for one host of a scheduled run (schedules → bot).
type HostRequest struct {
	Schedule string
	RunID    int64
	Host     string
	Action   Action
	// Trigger is cron, manual or catch-up; By is who asked for a manual run.
	Trigger string
	By      string
	// Recover is the schedule's recover key.
	Recover Recover
	// Guard asks for the rollback guard (Deployment.Guard); schedules
	// always set it.
	Guard bool
}

// HostResult is how a scheduled host's deployment ended. Anything but StateSucceeded with
// a nil Err counts as a failure: a switch that could not be verified halts a
// rolling run just like one that failed.
type HostResult struct {
	DeploymentID int64
	State        State
	Err          error
	// Link is a permalink to the deployment's thread, if it has one.
	Link string
	// Revision is the flake revision the deployment resolved and deployed.
	Revision string
	// Note says what else happened to a host that succeeded, for the
	// run's summary: "recovered after a power reset".
	Note string
}

// HostLock is a manual lock on a host.
type HostLock struct {
	Host      string
	Holder    string
	Reason    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ScheduleStatus is one schedule as the scheduler lists it and
// "/nixdeploy schedules" shows it.
type ScheduleStatus struct {
	Name     string
	Spec     string
	TimeZone string
	Hosts    []string
	Action   Action
	Strategy Strategy
	Paused   bool
	PausedBy string
	// ChangedAt is when the schedule was last paused or resumed.
	ChangedAt time.Time
	// Next is the next tick in the schedule's zone; zero while paused.
	Next time.Time
	// RunningID is the run in flight, 0 if none.
	RunningID int64
	// Last is the newest recorded run or skip, nil before the first.
	Last *ScheduleRun
}

// KeyReport is the outcome of a key preflight as chat shows it.
type KeyReport struct {
	// Table is the printable per-host table.
	Table string
	// Failures holds one line per failed check; empty means all passed.
	Failures []string
}
