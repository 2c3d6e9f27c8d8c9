package bot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/runs"
)

// deployErrorForUsers words a deployer error as one sentence: the one
// place that maps each of the deployer's error kinds (root sentinels) to
// what people read. The raw error (which may quote output) stays in the
// log and the stored log.
func deployErrorForUsers(err error, r Result) error {
	var um interface{ UserMessage() string }
	var ue *userError
	switch {
	case errors.Is(err, nixdeploy.ErrHostBusy), errors.Is(err, nixdeploy.ErrUnknownHost), errors.As(err, &um), errors.As(err, &ue):
		return err
	case errors.Is(err, nixdeploy.ErrPlanChanged):
		return UserError(fmt.Sprintf("the plan for %s changed after it was approved, so its disk was not touched; request it again", r.Host), err)
	case errors.Is(err, nixdeploy.ErrShutdown):
		return UserError(fmt.Sprintf("nixdeploy shut down during step %s on %s; check the host with /nixdeploy status and run it again", r.Step, r.Host), err)
	case errors.Is(err, nixdeploy.ErrCancelled), errors.Is(err, context.Canceled):
		return UserError("the deployment was cancelled; cleanup steps still ran", err)
	case errors.Is(err, nixdeploy.ErrHostKeyMismatch):
		return UserError(fmt.Sprintf("%s did not present its pinned host key, so nothing was sent to it; check it with /nixdeploy keys check %s", r.Host, r.Host), err)
	case errors.Is(err, nixdeploy.ErrAuth):
		return UserError("the SSH key of nixdeploy was refused; check the authorized keys of the runner and the targets", err)
	case errors.Is(err, nixdeploy.ErrRemoteUnknown):
		return UserError(fmt.Sprintf("nixdeploy lost step %s on %s and cannot tell how it ended: it may still be running on the runner; look there (or wait for the next start's reattach) before running it again", r.Step, r.Host), err)
	case errors.Is(err, nixdeploy.ErrConnectionLost):
		return UserError(fmt.Sprintf("the connection to %s was lost during step %s; check that it is up and run it again", r.Host, r.Step), err)
	case errors.Is(err, nixdeploy.ErrStepTimeout):
		return UserError(fmt.Sprintf("step %s on %s timed out; the log in the thread shows where it stopped", r.Step, r.Host), err)
	case errors.Is(err, nixdeploy.ErrRolledBack):
		return UserError(fmt.Sprintf("%s was rolled back by the guard and runs its previous system again; the log in the thread says which check failed or why it could not be reached", r.Host), err)
	case errors.Is(err, nixdeploy.ErrVerify):
		return UserError(fmt.Sprintf("%s did not pass verification after the change; the log lists the failed units", r.Host), err)
	case r.Step != "" && r.ExitCode < 0:
		// No exit status: the command never ran or its connection broke,
		// so "exit code -1" would say nothing. Say what failed instead.
		var op *net.OpError
		if errors.As(err, &op) {
			return UserError(fmt.Sprintf("step %s on %s could not reach %s: %s; check that it is up and that its address and port in the fleet config are right", r.Step, r.Host, opTarget(op), opCause(op)), err)
		}
		return UserError(fmt.Sprintf("step %s on %s ended without an exit status: %s", r.Step, r.Host, lastCause(err)), err)
	case r.Step != "":
		return UserError(fmt.Sprintf("step %s on %s failed with exit code %d; the last lines and the log in the thread say why", r.Step, r.Host, r.ExitCode), err)
	}
	return err
}

// wordedOr is err when it already carries a sentence for people, else err
// with sentence as that.
func wordedOr(err error, sentence string) error {
	var ue *userError
	var um interface{ UserMessage() string }
	if errors.As(err, &ue) || errors.As(err, &um) {
		return err
	}
	return UserError(sentence, err)
}

// oneLineErr is the outermost sentence of err, without the wrapped chain
// after the first colon when it would quote a Go error.
func oneLineErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, ": "); i > 0 && strings.Count(s, ": ") > 2 {
		s = s[:i]
	}
	return s
}

// opTarget is the address a failed dial was for.
func opTarget(op *net.OpError) string {
	if op.Addr != nil {
		return op.Addr.String()
	}
	return "the host"
}

// opCause is the system's reason, such as "connection refused", without
// Go's "dial tcp …:" prefix.
func opCause(op *net.OpError) string {
	var se *os.SyscallError
	if errors.As(op.Err, &se) {
		return se.Err.Error()
	}
	return op.Err.Error()
}

// lastCause is the innermost error's message on one line: the
// deployer's wrapping says where, this says what.
func lastCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// word is a lifecycle error as what people read: the lifecycle's own
// errors (busy hosts, a start a cancel beat, a plan that could not be
// pinned, a shutdown) here, the deployer's kinds in deployErrorForUsers.
func (b *Bot) word(res Result) error {
	err := res.Err
	var busy *runs.BusyError
	var ns *runs.NotStartedError
	var re *runs.ResolveError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &busy):
		return userf(err, "%s", busyText(busy))
	case errors.As(err, &ns):
		return userf(err, "#%d was not started: it was %s first", ns.ID, ns.State)
	case errors.As(err, &re):
		return wordedOr(re.Err, "could not resolve what would run: "+oneLineErr(re.Err))
	case errors.Is(err, nixdeploy.ErrShutdown) && res.Step == "":
		if res.State == nixdeploy.StateInterrupted {
			return userf(err, "nixdeploy shut down while this deployment was running; check the host and run it again")
		}
		return userf(err, "nixdeploy is shutting down; request it again once it is back")
	case errors.Is(err, runs.ErrNoFingerprint):
		return userf(err, "this nixdeploy cannot show the plan of a destructive action, so it cannot be approved; run it from a terminal")
	}
	return deployErrorForUsers(err, res)
}

// busyText says why a host is not free, and what to do.
func busyText(e *runs.BusyError) string {
	switch {
	case e.Lock != nil:
		why := ""
		if e.Lock.Reason != "" {
			why = " (" + escape(e.Lock.Reason) + ")"
		}
		return fmt.Sprintf("%s is locked by %s until %s%s; ask them, or wait for /nixdeploy unlock %s",
			e.Host, mention(e.Lock.Holder), utc(e.Lock.ExpiresAt), why, e.Host)
	case e.What != "":
		return fmt.Sprintf("%s is busy: %s is in progress; try again in a minute", e.Host, e.What)
	case e.Owner != "" && e.Holder.ID == 0:
		// A claim of a deployment still being created, or one lost in a
		// race between the check and the claim.
		return fmt.Sprintf("%s is busy with a deployment that is starting in %s; wait for it to finish", e.Host, e.Owner)
	case e.Owner != "":
		return fmt.Sprintf("%s is busy with deployment #%d, run by %s; wait for it to finish", e.Host, e.Holder.ID, e.Owner)
	case e.Unstarted != 0:
		return fmt.Sprintf("%s is busy with deployment #%d (%s by %s); #%d was not started, request it again later",
			e.Host, e.Holder.ID, e.Holder.Action, mention(e.Holder.Requester), e.Unstarted)
	}
	return fmt.Sprintf("%s is busy with deployment #%d (%s by %s); wait for it to finish or cancel it with /nixdeploy cancel %d",
		e.Host, e.Holder.ID, e.Holder.Action, mention(e.Holder.Requester), e.Holder.ID)
}

// NoSSHKey is the error every deployment fails with when nixdeploy has no
// SSH key to reach the fleet; env names the variable that provides one.
func NoSSHKey(env string, cause error) error {
	return UserError("nixdeploy has no SSH key to reach the fleet; set "+env+" or pass --ssh-key, then request it again", cause)
}

// KeyPreflightFailed is an install stopped by the key preflight, with its
// failures.
func KeyPreflightFailed(failures []string) error {
	return UserError("the key preflight failed: "+strings.Join(failures, "; "), errors.New("key preflight failed"))
}
