package bot

import (
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

// approversNeeded says who must approve, for the approval message.
func approversNeeded(cfg *nixdeploy.Config, dep nixdeploy.Deployment) string {
	if needsTwoApprovers(cfg, dep) {
		return "*two* different approvers"
	}
	return "an approver"
}
