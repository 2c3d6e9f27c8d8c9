package bot_test

import (
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// approvals returns the approval messages posted, oldest first.
func (h *harness) approvals() []string {
	var out []string
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Versions[0], "Approval needed") {
			out = append(out, m.Versions[0])
		}
	}
	return out
}

// TestMultiHostInstallPerHost: by default, an install of several hosts
// becomes one deployment and one approval per host, each naming its own
// disk, and approving one starts only that host (issue 15, attack 9).
func TestMultiHostInstallPerHost(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 2)
	h := newHarness(t, harnessOptions{started: started})
	if h.cfg.Slack.MultiHostInstall != nixdeploy.MultiInstallPerHost {
		t.Fatalf("default policy %q, want per_host", h.cfg.Slack.MultiHostInstall)
	}
	h.command(alice, "install ganon rk1-node1")
	got := h.approvals()
	if len(got) != 2 {
		t.Fatalf("%d approval messages, want one per host:\n%s", len(got), strings.Join(got, "\n---\n"))
	}
	for i, want := range [][2]string{{"ganon", "/dev/nvme0n1"}, {"rk1-node1", "/dev/mmcblk0"}} {
		other := "/dev/mmcblk0"
		if i == 1 {
			other = "/dev/nvme0n1"
		}
		if !strings.Contains(got[i], "install "+want[0]) || !strings.Contains(got[i], want[1]) || strings.Contains(got[i], other) {
			t.Errorf("approval %d does not name exactly %s and %s:\n%s", i+1, want[0], want[1], got[i])
		}
	}
	for id, host := range map[int64]string{1: "ganon", 2: "rk1-node1"} {
		if d := h.deployment(id); len(d.Hosts) != 1 || d.Hosts[0] != host || d.State != nixdeploy.StateAwaiting {
			t.Errorf("deployment %d = %+v", id, d)
		}
	}
	msgs := h.slack.Messages()
	var first string
	for _, m := range msgs {
		if strings.Contains(m.Versions[0], "Approval needed") {
			first = m.TS
			break
		}
	}
	h.react(bob, "white_check_mark", channel, first)
	select {
	case d := <-started:
		if len(d.Hosts) != 1 || d.Hosts[0] != "ganon" {
			t.Errorf("started %v, want ganon alone", d.Hosts)
		}
	default:
		t.Fatal("the approved host did not start")
	}
	h.settle()
	if len(started) != 0 || h.deployment(2).State != nixdeploy.StateAwaiting {
		t.Error("approving one host's install started another")
	}
}

// TestMultiHostInstallTwoApprovers: with multi_host_install =
// "two_approvers", one approval lists every host and disk and takes two
// different approvers, neither the requester; one approver twice is not
// two.
func TestMultiHostInstallTwoApprovers(t *testing.T) {
	cfg := testConfig(t, func(s string) string {
		s = strings.Replace(s, `approvers = ["U0ALICE01", "U0BOB0001"]`, `approvers = ["U0ALICE01", "U0BOB0001", "U0CAROL01"]`, 1)
		return strings.Replace(s, "destructive = true\n", "destructive = true\nmulti_host_install = \"two_approvers\"\n", 1)
	})
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{cfg: cfg, started: started})
	h.command(alice, "install ganon rk1-node1")
	got := h.approvals()
	if len(got) != 1 {
		t.Fatalf("%d approval messages, want 1", len(got))
	}
	for _, want := range []string{"2 disks", "ganon*: `/dev/nvme0n1`", "rk1-node1*: `/dev/mmcblk0`", "*two* different approvers"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("approval lacks %q:\n%s", want, got[0])
		}
	}
	msg := h.approvalMessage()
	h.react(bob, "white_check_mark", msg.Channel, msg.TS)
	h.react(bob, "white_check_mark", msg.Channel, msg.TS)
	h.react(alice, "white_check_mark", msg.Channel, msg.TS) // the requester
	if len(started) != 0 {
		t.Fatal("one approver (twice) and the requester started a two-disk install")
	}
	if a := h.approval(msg.Channel, msg.TS); a.State != nixdeploy.ApprovalPending {
		t.Fatalf("approval %s after one approver", a.State)
	}
	h.react(carol, "white_check_mark", msg.Channel, msg.TS)
	select {
	case d := <-started:
		if len(d.Hosts) != 2 {
			t.Errorf("started %v", d.Hosts)
		}
	default:
		t.Fatal("two approvers did not start the install")
	}
	kinds := h.auditKinds(1)
	for _, want := range []string{bob + " approved-first", bob + " approval-refused-same-approver", alice + " approval-refused-self", carol + " approved"} {
		if !contains(kinds, want) {
			t.Errorf("audit lacks %q: %v", want, kinds)
		}
	}
}
