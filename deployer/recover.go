package deployer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// BMC is what recovery needs of a Turing Pi board's management
// controller (Options.BMC); *bmc.Fleet satisfies it. Both calls name the
// fleet host; the BMC knows its board and slot.
type BMC interface {
	// Power applies op to host's slot and returns its state afterwards.
	Power(ctx context.Context, host string, op nixdeploy.PowerOp) (nixdeploy.PowerState, error)
	// UART returns at most the last n lines of host's serial console,
	// printable and redacted.
	UART(ctx context.Context, host string, n int) ([]string, error)
}

// ConsoleTail is how many serial console lines recovery puts into the
// deployment's log.
const ConsoleTail = 40

// stepRecover names recovery in the log and the recorded steps.
const stepRecover = nixdeploy.StepRecover

// Recovery sentences, for the summary and the host's report.
const (
	RecoveredText = nixdeploy.RecoveredNote
	StillDownText = "still down after a power reset"
)

// RecoveryError is a host still unreachable after its power reset.
type RecoveryError struct {
	Host string
	// Board and Slot say where the host sits.
	Board string
	Slot  int
	// Console is the serial console's tail after the reset.
	Console []string
	// Err says why the host is still down; Cause is the failure that
	// started the recovery.
	Err   error
	Cause error
}

func (e *RecoveryError) Error() string {
	return fmt.Sprintf("%s is %s: %v (first: %v)", e.Host, StillDownText, e.Err, e.Cause)
}

// Unwrap gives both errors, so the original kind (a lost connection, a
// timeout) stays visible to errors.Is.
func (e *RecoveryError) Unwrap() []error { return []error{e.Err, e.Cause} }

// UserMessage is the one sentence people see, with the last console
// lines: what the node printed is the first clue to why it hangs.
func (e *RecoveryError) UserMessage() string {
	why := "it did not come back with its pinned host key"
	if errors.Is(e.Err, nixdeploy.ErrVerify) {
		why = "it came back but failed verification"
	} else if errors.Is(e.Err, errResetFailed) {
		why = "the BMC could not reset it"
	}
	s := fmt.Sprintf("%s could not be reached after activation and is %s through its BMC (slot %d of %s): %s; the deployment log has its serial console", e.Host, StillDownText, e.Slot, e.Board, why)
	if n := len(e.Console); n > 0 {
		last := e.Console[max(0, n-3):]
		s += ", which ended with: " + strings.Join(last, " ⏎ ")
	}
	return s
}

var errResetFailed = errors.New("power reset failed")

// resets is a run's budget of power resets: one per host.
type resets struct {
	mu   sync.Mutex
	done map[string]bool
}

// take reports whether host may be reset, and spends its one reset.
func (r *resets) take(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = map[string]bool{}
	}
	if r.done[host] {
		return false
	}
	r.done[host] = true
	return true
}

// unreachable reports whether a wait-for-ssh or verify failure means the
// host did not answer: a refused, timed-out or lost connection, a
// handshake that never finished. A host that answered (a command's exit
// status, a failed verification, a wrong host key, a refused key) is not
// hung, and a reset would not help; a cancel is a person's decision.
func unreachable(err error) bool {
	var ee *ExitError
	switch {
	case err == nil,
		errors.Is(err, nixdeploy.ErrVerify),
		errors.Is(err, nixdeploy.ErrHostKeyMismatch),
		errors.Is(err, nixdeploy.ErrAuth),
		errors.Is(err, nixdeploy.ErrCancelled),
		errors.Is(err, nixdeploy.ErrShutdown),
		errors.Is(err, context.Canceled),
		errors.As(err, &ee):
		return false
	}
	return true
}

// recoverUnreachable runs after a host's steps, when it failed. If the
// host sits on a BMC and could not be reached after activation (its
// wait-for-ssh or verify step failed without an answer), its serial
// console tail goes into the log. If the deployment allows it
// (Deployment.Recover, a schedule's recover = "power-reset"), the host is
// power-cycled once, waited for with its pinned host key and verified
// again: rep then says recovered (the host succeeds) or still down.
func (h *hostRun) recoverUnreachable(ctx context.Context, rep *HostReport) {
	if h.host.BMC == "" || rep.Outcome != OutcomeFailed || ctx.Err() != nil {
		return
	}
	if rep.Step != "wait-for-ssh" && rep.Step != "verify" || !unreachable(rep.Err) {
		return
	}
	name := h.host.Name
	bmc := h.d.opts.BMC
	if bmc == nil {
		h.em.event(name, stepRecover, "%s cannot be reached after step %s, and no BMC is wired into nixdeploy to read its console or reset it (is %s set?)",
			name, rep.Step, nixdeploy.BMC{Name: h.host.BMC}.PasswordEnv())
		h.em.barrier()
		return
	}
	res := nixdeploy.StepResult{Host: name, Name: stepRecover, StartedAt: h.d.opts.Now().UTC(), ExitCode: -1}
	defer func() {
		res.EndedAt = h.d.opts.Now().UTC()
		if res.ExitCode == 0 {
			res.Before, res.After = h.before, h.after
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := h.d.opts.Store.RecordStep(rctx, h.dep.ID, res); err != nil {
			h.log.Error("record step", "step", stepRecover, "err", err)
		}
	}()
	h.em.event(name, stepRecover, "%s cannot be reached after step %s; reading its serial console through the BMC %s (slot %d)", name, rep.Step, h.host.BMC, h.host.BMCNode)
	h.consoleTail(ctx)
	if h.dep.Recover != nixdeploy.RecoverPowerReset {
		h.em.event(name, stepRecover, "not power-cycling %s: only a schedule with recover = \"power-reset\" does that; /nixdeploy power %s reset does it by hand", name, name)
		res.Error = "no power reset: recover is not power-reset"
		h.em.barrier()
		return
	}
	if h.d.jump != nil {
		// Through a jump host, a dead jump host looks like a dead node;
		// power-cycling a node that may be fine helps nobody.
		if err := h.jumpAnswers(ctx); err != nil {
			h.em.event(name, stepRecover, "not power-cycling %s: the jump host cannot be reached either, so the node may be fine: %s", name, h.red.plain(err.Error()))
			res.Error = "the jump host is unreachable"
			h.em.barrier()
			return
		}
	}
	if !h.resets.take(name) {
		h.em.event(name, stepRecover, "not power-cycling %s again: it was reset once in this run already", name)
		res.Error = "already reset once in this run"
		h.em.barrier()
		return
	}
	cause := rep.Err
	fail := func(err error) {
		if ctx.Err() != nil {
			// Cancelled (or shut down) during the recovery: that, not
			// the node, is why it ended.
			h.em.event(name, stepRecover, "recovery of %s stopped: %v", name, context.Cause(ctx))
			res.Error = "cancelled"
			rep.Outcome, rep.Step, rep.ExitCode = OutcomeCancelled, stepRecover, -1
			rep.Err = fmt.Errorf("cancelled during the recovery: %w", context.Cause(ctx))
			return
		}
		console := h.consoleTail(ctx)
		re := &RecoveryError{Host: name, Board: h.host.BMC, Slot: h.host.BMCNode, Console: console, Err: err, Cause: cause}
		res.Error = h.red.plain(re.Error())
		h.em.event(name, stepRecover, "%s is %s: %s", name, StillDownText, h.red.plain(err.Error()))
		h.em.barrier()
		rep.Step, rep.ExitCode, rep.Err = stepRecover, -1, re
		rep.Recovery = StillDownText
	}
	h.log.Warn("power-cycling an unreachable host through its BMC", "bmc", h.host.BMC, "slot", h.host.BMCNode)
	st, err := bmc.Power(ctx, name, nixdeploy.PowerReset)
	if err != nil {
		fail(fmt.Errorf("%w: %w", errResetFailed, err))
		return
	}
	h.em.event(name, stepRecover, "power-cycled %s through the BMC (it is %s now); waiting up to %s for its pinned host key", name, st, h.d.opts.Timeouts.WaitSSH)
	wctx, cancel := context.WithTimeout(ctx, h.d.opts.Timeouts.WaitSSH)
	err = h.waitSSH(wctx)
	cancel()
	if err != nil {
		fail(fmt.Errorf("did not come back within %s: %w", h.d.opts.Timeouts.WaitSSH, err))
		return
	}
	vctx, cancel := context.WithTimeout(ctx, h.d.opts.Timeouts.Verify)
	err = h.verify(vctx)
	cancel()
	if err != nil {
		fail(fmt.Errorf("came back but failed verification: %w", err))
		return
	}
	h.em.event(name, stepRecover, "%s %s through its BMC and passed verification", name, RecoveredText)
	h.em.barrier()
	res.ExitCode = 0
	rep.Outcome, rep.Step, rep.ExitCode, rep.Err = OutcomeSucceeded, "", 0, nil
	rep.Recovery = RecoveredText
	h.warnings = append(h.warnings, name+" "+RecoveredText+" through its BMC")
}

// consoleTail writes the last ConsoleTail lines of the host's serial
// console into the log, through the emitter's redaction like every line,
// and returns them as written there.
func (h *hostRun) consoleTail(ctx context.Context) []string {
	name := h.host.Name
	lines, err := h.d.opts.BMC.UART(ctx, name, ConsoleTail)
	if err != nil {
		h.em.event(name, stepRecover, "the serial console of %s could not be read: %s", name, h.red.plain(err.Error()))
		return nil
	}
	if len(lines) == 0 {
		h.em.event(name, stepRecover, "the serial console of %s is empty", name)
		return nil
	}
	h.em.event(name, stepRecover, "serial console of %s, last %d lines:", name, len(lines))
	out := make([]string, len(lines))
	for i, l := range lines {
		h.em.line(name, stepRecover, nixdeploy.StreamStdout, []byte("console| "+l))
		out[i] = h.red.plain(l)
	}
	return out
}

// jumpAnswers checks that the jump host answers now: a cached connection
// to it may not know yet that its peer is gone, so it must answer a
// keepalive within the connect timeout.
func (h *hostRun) jumpAnswers(ctx context.Context) error {
	j, err := h.dl.jumpHost(ctx)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := j.SendRequest("keepalive@openssh.com", true, nil)
		done <- err
	}()
	t := time.NewTimer(h.d.opts.ConnectTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("the jump host does not answer: %w", err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("the jump host did not answer within %s", h.d.opts.ConnectTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}
