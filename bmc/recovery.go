package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Recovery is the BMC's part of getting a node back that a switch, a
// canary or a nightly run could not reach after activation: read the
// console tail for the log, and, where the schedule allows it
// (recover = "power-reset"), power-cycle the node once, wait for its
// pinned host key and verify it again.
//
// It does not decide when a node counts as unreachable, nor write the
// log or the summary: the deployment lifecycle owns those and calls
// Recover. One Recovery serves one run, which is what bounds the resets:
// never more than one per node per run, however often the run asks.

// Board is what recovery needs of the BMC; *Fleet satisfies it.
type Board interface {
	Power(ctx context.Context, host string, op nixdeploy.PowerOp) (nixdeploy.PowerState, error)
	UART(ctx context.Context, host string, n int) ([]string, error)
}

// Reacher is what recovery needs of the deployer.
type Reacher interface {
	// WaitUp returns once host answers SSH with its pinned host key, or
	// fails when ctx ends first.
	WaitUp(ctx context.Context, host string) error
	// Verify checks the system host runs, as after any activation.
	Verify(ctx context.Context, host string) error
}

// RecoveryOptions configure NewRecovery. Board and Reacher are required.
type RecoveryOptions struct {
	Board   Board
	Reacher Reacher
	// Reset allows one power-cycle per node (recover = "power-reset").
	Reset bool
	// BootTimeout bounds the wait for the node after the reset
	// (default 10 min: an RK1 from eMMC boots in about one).
	BootTimeout time.Duration
	// TailLines is how much of the console goes into the log (default 40).
	TailLines int
}

// Recovery is one run's recovery; safe for concurrent use.
type Recovery struct {
	o     RecoveryOptions
	mu    sync.Mutex
	reset map[string]bool
}

// NewRecovery starts a run's recovery with no node reset yet.
func NewRecovery(o RecoveryOptions) *Recovery {
	if o.BootTimeout <= 0 {
		o.BootTimeout = 10 * time.Minute
	}
	if o.TailLines <= 0 {
		o.TailLines = 40
	}
	return &Recovery{o: o, reset: map[string]bool{}}
}

// ErrResetUsed: the node was power-cycled once in this run already.
var ErrResetUsed = errors.New("the node was already reset once in this run")

// ErrNoReset: the schedule does not allow a power reset.
var ErrNoReset = errors.New("recovery by power reset is not enabled")

// Outcome is what Recover did, for the log and the run's summary.
type Outcome struct {
	Host string
	// Console is the redacted tail of the serial console: from after the
	// reset if there was one, else from when the node was found down.
	Console []string
	// Reset is set when the node was power-cycled; Recovered when it came
	// back and passed verification.
	Reset     bool
	Recovered bool
	// Err says why the node is still down (nil when Recovered).
	Err error
}

// Summary is the outcome as one line for the run's summary.
func (o Outcome) Summary() string {
	switch {
	case o.Recovered:
		return o.Host + " recovered after a power reset through its BMC"
	case o.Reset:
		return fmt.Sprintf("%s is still down after a power reset: %v", o.Host, o.Err)
	case o.Err != nil:
		return fmt.Sprintf("%s is unreachable and was not reset: %v", o.Host, o.Err)
	}
	return o.Host + " is unreachable"
}

// Recover tries to bring host back; see Recovery.
func (r *Recovery) Recover(ctx context.Context, host string) Outcome {
	out := Outcome{Host: host}
	tail := func() {
		lines, err := r.o.Board.UART(ctx, host, r.o.TailLines)
		if err != nil {
			out.Console = []string{"(serial console unavailable: " + oneLine(err.Error()) + ")"}
			return
		}
		out.Console = lines
	}
	tail()
	if !r.o.Reset {
		out.Err = ErrNoReset
		return out
	}
	r.mu.Lock()
	used := r.reset[host]
	r.reset[host] = true
	r.mu.Unlock()
	if used {
		out.Err = ErrResetUsed
		return out
	}
	if _, err := r.o.Board.Power(ctx, host, nixdeploy.PowerReset); err != nil {
		out.Err = fmt.Errorf("power reset: %w", err)
		return out
	}
	out.Reset = true
	wctx, cancel := context.WithTimeout(ctx, r.o.BootTimeout)
	err := r.o.Reacher.WaitUp(wctx, host)
	cancel()
	if err != nil {
		out.Err = fmt.Errorf("did not come back within %s: %w", r.o.BootTimeout, err)
		tail()
		return out
	}
	if err := r.o.Reacher.Verify(ctx, host); err != nil {
		out.Err = fmt.Errorf("came back but failed verification: %w", err)
		tail()
		return out
	}
	out.Recovered = true
	return out
}

// ConsoleBlock renders an outcome's console tail for a deployment log.
func (o Outcome) ConsoleBlock() string {
	if len(o.Console) == 0 {
		return "serial console of " + o.Host + ": (empty)"
	}
	return "serial console of " + o.Host + ", last lines:\n" + strings.Join(o.Console, "\n")
}
