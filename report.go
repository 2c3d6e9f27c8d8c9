package nixdeploy

import (
	"fmt"
	"strings"
)

// PhasePrefix starts the text of a phase event: the deployer's typed
// announcement that nixos-anywhere entered a phase ("### Installing NixOS
// ###" on its stdout becomes the event "phase: Installing NixOS").
const PhasePrefix = "phase: "

// Phase reports the nixos-anywhere phase an event line announces, such as
// "Installing NixOS". Only the deployer's events count; a command's output
// that looks like a marker does not.
func (l LogLine) Phase() (string, bool) {
	if l.Stream != StreamEvent {
		return "", false
	}
	return strings.CutPrefix(l.Text, PhasePrefix)
}

// Sink receives a deployment's log lines, already redacted, in order: Seq
// rises by one from line to line. Stream is stdout, stderr or event; events
// are the deployer's own lines (steps starting and ending, warnings, and
// nixos-anywhere's phases). Line is called from one goroutine; a slow sink
// slows the deployment down rather than losing lines.
type Sink interface {
	Line(LogLine)
}

// Outcome is how something ended: a host within a deployment, a host
// within a scheduled run, or a scheduled run. One type for all three, so
// a run's summary, its stored record and the deployer's report agree.
type Outcome string

// Outcomes.
const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeUntouched: the host was not reached because an earlier host
	// failed or the deployment (or run) was cancelled or halted first.
	OutcomeUntouched Outcome = "untouched"
	// OutcomeRunning is a scheduled run still in flight.
	OutcomeRunning Outcome = "running"
	// OutcomeSkipped is a scheduled host (or run) not started: busy too
	// long, or a missed tick skipped.
	OutcomeSkipped Outcome = "skipped"
	// OutcomeInterrupted is work stopped by a shutdown, not by a person.
	OutcomeInterrupted Outcome = "interrupted"
)

// HostReport is what happened to one host.
type HostReport struct {
	Host    string
	Outcome Outcome
	// Step is the step that failed or was cancelled.
	Step string
	// ExitCode is that step's exit status (-1: none, such as a timeout).
	ExitCode int
	Err      error
	// Before and After are /run/current-system around the action.
	Before, After string
	Warnings      []string
	// Revision is the flake revision deployed ("" when never resolved).
	Revision string
	// Recovery says what a power reset through the host's BMC did, when
	// one was tried: "recovered after a power reset" or "still down after
	// a power reset".
	Recovery string
}

// Report is the result of a deployment run (deployer.Run).
type Report struct {
	DeploymentID int64
	State        State
	// Hosts are in run order, untouched ones included.
	Hosts []HostReport
	// LogErr is set when the log could not be stored completely.
	LogErr error
}

func (r *Report) with(o Outcome) []string {
	var out []string
	for _, h := range r.Hosts {
		if h.Outcome == o {
			out = append(out, h.Host)
		}
	}
	return out
}

// Succeeded lists the hosts that were deployed and verified.
func (r *Report) Succeeded() []string { return r.with(OutcomeSucceeded) }

// Failed lists the hosts whose deployment failed or was cancelled.
func (r *Report) Failed() []string {
	return append(r.with(OutcomeFailed), r.with(OutcomeCancelled)...)
}

// Untouched lists the hosts the deployment never reached.
func (r *Report) Untouched() []string { return r.with(OutcomeUntouched) }

// Summary is one line per outcome, for a chat message or terminal.
func (r *Report) Summary() string {
	var parts []string
	if s := r.Succeeded(); len(s) > 0 {
		parts = append(parts, "succeeded: "+strings.Join(s, ", "))
	}
	for _, h := range r.Hosts {
		if h.Outcome == OutcomeFailed || h.Outcome == OutcomeCancelled {
			parts = append(parts, fmt.Sprintf("%s: %s at step %s", h.Outcome, h.Host, h.Step))
		}
	}
	if u := r.Untouched(); len(u) > 0 {
		parts = append(parts, "not touched: "+strings.Join(u, ", "))
	}
	for _, h := range r.Hosts {
		if h.Recovery != "" {
			parts = append(parts, h.Host+" "+h.Recovery)
		}
	}
	return strings.Join(parts, "; ")
}

// StepError is the failure of one step on one host.
type StepError struct {
	Host     string
	Step     string
	ExitCode int
	Err      error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s: step %s failed: %v", e.Host, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }
