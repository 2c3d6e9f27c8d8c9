package bot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

// TestEndToEndInstall drives a real install through the bot: signed Slack
// requests in, the real deployer against the sshd lab (pinned host keys,
// stub nixos-anywhere and nixos-rebuild), the fake Slack Web API out.
func TestEndToEndInstall(t *testing.T) {
	lab := sshlab.New(t, sshlab.Options{Hosts: []string{"ganon"}})
	cfg := lab.Config(`
[slack]
channel = "C0FLEET01"
deployers = ["U0ALICE01", "U0BOB0001"]
approvers = ["U0ALICE01", "U0BOB0001"]
destructive = true
`)
	newDeployer := func(store *db.DB) bot.Deployer {
		d, err := deployer.New(deployer.Options{
			Config: cfg, Store: store, HostKeys: lab.HostKeys(), ClientKey: lab.Client,
			ConnectTimeout: 5 * time.Second, KeepaliveInterval: time.Second, RebootGrace: -1,
			WaitBackoff: 20 * time.Millisecond, KillGrace: 2 * time.Second,
			Timeouts: deployer.Timeouts{Command: 20 * time.Second, Install: time.Minute, Rebuild: time.Minute, WaitSSH: 20 * time.Second, Verify: 20 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	h := newHarness(t, harnessOptions{cfg: cfg, realClock: true, interval: 20 * time.Millisecond, deployer: newDeployer})

	if ack := h.slash(alice, "install ganon"); ack != "`/nixdeploy install ganon`" {
		t.Fatalf("ack = %q", ack)
	}
	h.settle()
	msg := h.approvalMessage()
	for _, want := range []string{"ganon", lab.Target("ganon").Addr, "/dev/vda", lab.InstallerFlake + "#ganon", lab.Flake + "#ganon"} {
		if !strings.Contains(msg.Rendered(), want) {
			t.Errorf("approval message lacks %q", want)
		}
	}

	h.react(alice, "white_check_mark", msg.Channel, msg.TS)
	if got := lab.CallsTo("nixos-anywhere"); len(got) != 0 {
		t.Fatalf("the requester's own approval ran nixos-anywhere: %q", got)
	}
	h.react(bob, "white_check_mark", msg.Channel, msg.TS)
	h.settle()

	dep := h.deployment(1)
	if dep.State != nixdeploy.StateSucceeded {
		t.Fatalf("deployment %s: %s", dep.State, dep.Error)
	}
	if got := lab.CallsTo("nixos-anywhere"); len(got) != 1 {
		t.Errorf("nixos-anywhere ran %d times", len(got))
	}
	status, ok := h.slack.Message(dep.Channel, dep.MessageTS)
	if !ok {
		t.Fatal("no status message")
	}
	if len(status.Versions) < 4 {
		t.Errorf("status message has %d versions, want a post, several updates and the final", len(status.Versions))
	}
	final := status.Rendered()
	for _, want := range []string{"#1 install ganon* — succeeded in", "approved by <@" + bob + ">", "✓ kexec → ✓ disko → ✓ install", "is in the thread"} {
		if !strings.Contains(final, want) {
			t.Errorf("final message lacks %q:\n%s", want, final)
		}
	}
	files := h.slack.Files()
	if len(files) != 1 || files[0].ThreadTS != dep.MessageTS {
		t.Fatalf("log upload: %+v", files)
	}
	var want strings.Builder
	if err := h.db.EachLog(t.Context(), dep.ID, func(l nixdeploy.LogLine) error {
		want.WriteString(bot.LogFileLine(l))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := string(files[0].Content); got != want.String() || !strings.Contains(got, "### Installing NixOS ###") {
		t.Errorf("uploaded log (%d bytes) is not the stored log (%d bytes)", len(got), want.Len())
	}

	a := h.approval(msg.Channel, msg.TS)
	if a.State != nixdeploy.ApprovalApproved || a.DecidedBy != bob {
		t.Errorf("approval %s by %s", a.State, a.DecidedBy)
	}
	trail := h.auditKinds(dep.ID)
	for _, k := range []string{alice + " requested", "nixdeploy approval-posted", alice + " approval-refused-self", bob + " approved", "nixdeploy started", "nixdeploy succeeded"} {
		if !contains(trail, k) {
			t.Errorf("audit trail lacks %q: %v", k, trail)
		}
	}
	if sys, _, err := h.db.CurrentSystem(t.Context(), "ganon"); err != nil || sys != lab.CurrentSystem("ganon") {
		t.Errorf("current system %q (%v), lab says %q", sys, err, lab.CurrentSystem("ganon"))
	}
}
