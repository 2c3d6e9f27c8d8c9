package bot

import (
	"context"
	"fmt"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

// hostGroups splits a request into the deployments it becomes. An install
// of several hosts ("install @rk1", "install *") under the default policy
// (slack.multi_host_install = "per_host") becomes one deployment per host,
// each with its own approval naming its one disk, so no single reaction
// wipes several disks (issue 15, attack 9). Anything else stays whole.
func hostGroups(cfg *nixdeploy.Config, cmd commands.Command) [][]string {
	if !cmd.Action.Destructive() || len(cmd.Hosts) < 2 || cfg.Slack.MultiHostInstall == nixdeploy.MultiInstallTwoApprovers {
		return [][]string{cmd.Hosts}
	}
	out := make([][]string, len(cmd.Hosts))
	for i, h := range cmd.Hosts {
		out[i] = []string{h}
	}
	return out
}

// needsTwoApprovers reports whether dep's approval takes two approvers:
// an install of several hosts under slack.multi_host_install =
// "two_approvers".
func needsTwoApprovers(cfg *nixdeploy.Config, dep nixdeploy.Deployment) bool {
	return dep.Action.Destructive() && len(dep.Hosts) > 1 && cfg.Slack.MultiHostInstall == nixdeploy.MultiInstallTwoApprovers
}

// firstOfTwo records user's approval of a that needs two approvers. It
// reports true when that approval is not yet the deciding one: the first
// approver, or the first one reacting again. The first approver is kept in
// memory only: after a restart both approvals are needed again, which errs
// on the safe side.
func (b *Bot) firstOfTwo(ctx context.Context, a nixdeploy.Approval, dep nixdeploy.Deployment, user string) (bool, error) {
	b.mu.Lock()
	if b.firstApprover == nil {
		b.firstApprover = map[int64]string{}
	}
	first, seen := b.firstApprover[a.ID]
	if !seen {
		b.firstApprover[a.ID] = user
	}
	b.mu.Unlock()
	inv := Invocation{User: user, Channel: a.Channel}
	switch {
	case !seen:
		b.audit(ctx, user, "approved-first", dep.ID, fmt.Sprintf("approval %d, fingerprint %s: one of two approvers", a.ID, a.Fingerprint))
		b.log.Info("first of two approvals", "approval", a.ID, "deployment", dep.ID, "user", user)
		return true, b.tell(ctx, inv, reply(fmt.Sprintf("Noted: this install wipes %d disks, so a second approver other than you and the requester must approve it too.", len(dep.Hosts))))
	case first == user:
		b.audit(ctx, user, "approval-refused-same-approver", dep.ID, fmt.Sprintf("approval %d", a.ID))
		return true, b.tell(ctx, inv, reply("You already approved this; a second, different approver must approve it too."))
	}
	b.mu.Lock()
	delete(b.firstApprover, a.ID)
	b.mu.Unlock()
	return false, nil
}

// approversNeeded says who must approve, for the approval message.
func approversNeeded(cfg *nixdeploy.Config, dep nixdeploy.Deployment) string {
	if needsTwoApprovers(cfg, dep) {
		return "*two* different approvers"
	}
	return "an approver"
}
