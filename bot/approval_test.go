package bot_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// TestInstallApproval walks one destructive request through every rule:
// the approval message names what will be wiped; the requester's own
// approval, a non-approver's and a reaction on another message change
// nothing (and the first two are audited); an approver's approval runs it.
func TestInstallApproval(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 4)
	h := newHarness(t, harnessOptions{started: started})

	if got := h.command(alice, "install ganon"); got != "`/nixdeploy install ganon`" {
		t.Errorf("ack = %q", got)
	}
	h.settle()
	msg := h.approvalMessage()
	text := msg.Rendered()
	for _, want := range []string{
		"ganon", "192.0.2.10:22", "/dev/nvme0n1", // host, address, the disk that is wiped
		"/srv/dots/nix/nixos-installer#ganon", "/srv/dots/nix#ganon", // installer and full flake refs
		"<@" + alice + ">", ":white_check_mark:", ":x:", "<@" + bob + ">", // requester, reactions, approvers
		"Expires 2026-11-26 22:15 UTC", // expiry, from the injected clock
	} {
		if !strings.Contains(text, want) {
			t.Errorf("approval message lacks %q:\n%s", want, text)
		}
	}
	if !slices.Equal(msg.Reactions, []string{"white_check_mark", "x"}) {
		t.Errorf("seeded reactions = %v", msg.Reactions)
	}
	dep := h.deployment(1)
	if dep.State != nixdeploy.StateAwaiting || dep.Requester != alice {
		t.Fatalf("deployment = %+v, want awaiting approval by alice", dep)
	}

	// The bot's own seeded reactions, the requester, a non-approver and a
	// reaction elsewhere: none of them approves.
	h.react("U0NIXBOT01", "white_check_mark", msg.Channel, msg.TS)
	h.react(alice, "white_check_mark", msg.Channel, msg.TS)
	h.react(carol, "white_check_mark", msg.Channel, msg.TS)
	h.react(eve, "white_check_mark", msg.Channel, msg.TS)
	h.react(bob, "white_check_mark", msg.Channel, "1732662000.999999")
	h.react(bob, "thumbsup", msg.Channel, msg.TS)
	h.settle()
	if len(started) != 0 {
		t.Fatal("the deployment started without a valid approval")
	}
	if a := h.approval(msg.Channel, msg.TS); a.State != nixdeploy.ApprovalPending {
		t.Fatalf("approval is %s after invalid reactions", a.State)
	}
	if !anyContains(h.ephemerals(alice), "someone else must approve") {
		t.Errorf("alice was not told why her approval does not count: %v", h.ephemerals(alice))
	}
	if !anyContains(h.ephemerals(carol), "Only approvers can approve") {
		t.Errorf("carol was not told: %v", h.ephemerals(carol))
	}

	h.react(bob, "white_check_mark", msg.Channel, msg.TS)
	h.settle()
	if len(started) != 1 {
		t.Fatalf("%d deployments started after bob's approval, want 1", len(started))
	}
	a := h.approval(msg.Channel, msg.TS)
	if a.State != nixdeploy.ApprovalApproved || a.DecidedBy != bob {
		t.Errorf("approval = %s by %s, want approved by bob", a.State, a.DecidedBy)
	}
	if dep := h.deployment(1); dep.State != nixdeploy.StateSucceeded {
		t.Errorf("deployment ended %s", dep.State)
	}
	if m, _ := h.slack.Message(msg.Channel, msg.TS); !strings.Contains(m.Rendered(), "Approved* by <@"+bob+">") {
		t.Errorf("approval message not updated:\n%s", m.Rendered())
	}
	want := []string{
		alice + " requested",
		"nixdeploy approval-posted",
		alice + " approval-refused-self",
		carol + " approval-ignored-not-approver",
		eve + " approval-ignored-not-approver",
		bob + " approved",
		"nixdeploy started",
		"nixdeploy succeeded",
	}
	if got := h.auditKinds(1); !slices.Equal(got, want) {
		t.Errorf("audit trail:\n got %v\nwant %v", got, want)
	}
}

func TestNonDeployerRefused(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started})
	h.command(eve, "install ganon")
	h.command(eve, "switch rk1-node1")
	h.settle()
	if len(started) != 0 {
		t.Fatal("a non-deployer's request ran")
	}
	if deps, _ := h.db.Deployments(t.Context(), "", 10); len(deps) != 0 {
		t.Errorf("a non-deployer's request was stored: %v", deps)
	}
	if got := h.ephemerals(eve); len(got) != 2 || !strings.Contains(got[0], "only deployers may request deployments") {
		t.Errorf("eve was told %q", got)
	}
	if got := h.auditKinds(0); !slices.Equal(got, []string{eve + " refused-not-deployer", eve + " refused-not-deployer"}) {
		t.Errorf("audit = %v", got)
	}
}

// TestExpiredApproval: the expiry timer (on the injected clock) ends the
// approval and edits its message; an approval after that does nothing.
func TestExpiredApproval(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started})
	h.command(alice, "install ganon")
	h.settle()
	msg := h.approvalMessage()

	h.clock.Advance(15*time.Minute - time.Second)
	h.settle()
	if a := h.approval(msg.Channel, msg.TS); a.State != nixdeploy.ApprovalPending {
		t.Fatalf("approval %s before its expiry", a.State)
	}
	h.clock.Advance(time.Second)
	h.settle()
	if a := h.approval(msg.Channel, msg.TS); a.State != nixdeploy.ApprovalExpired {
		t.Fatalf("approval %s after its expiry, want expired", a.State)
	}
	if m, _ := h.slack.Message(msg.Channel, msg.TS); !strings.Contains(m.Rendered(), "Expired* at 2026-11-26 22:15 UTC") {
		t.Errorf("approval message not marked expired:\n%s", m.Rendered())
	}
	h.react(bob, "white_check_mark", msg.Channel, msg.TS)
	h.settle()
	if len(started) != 0 {
		t.Fatal("an expired approval started the deployment")
	}
	if dep := h.deployment(1); dep.State != nixdeploy.StateExpired {
		t.Errorf("deployment %s, want expired", dep.State)
	}
	kinds := h.auditKinds(1)
	if !contains(kinds, "nixdeploy expired") || !contains(kinds, bob+" approval-ignored-decided") {
		t.Errorf("audit = %v", kinds)
	}
}

// TestRejectCancels: a non-approver's reject changes nothing; an
// approver's reject, or the requester's own, ends the request.
func TestRejectCancels(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started})
	h.command(alice, "install ganon")
	h.command(carol, "install rk1-node1")
	h.settle()
	var ganon, rk1 string
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Text, "Approval needed: #1") {
			ganon = m.TS
		}
		if strings.Contains(m.Text, "Approval needed: #2") {
			rk1 = m.TS
		}
	}
	h.react(eve, "x", channel, ganon)
	h.settle()
	if a := h.approval(channel, ganon); a.State != nixdeploy.ApprovalPending {
		t.Fatalf("eve's reject decided the approval: %s", a.State)
	}
	h.react(bob, "x", channel, ganon) // an approver
	h.react(carol, "x", channel, rk1) // the requester, not an approver
	h.settle()
	for _, tc := range []struct {
		ts, by string
		dep    int64
	}{{ganon, bob, 1}, {rk1, carol, 2}} {
		a := h.approval(channel, tc.ts)
		if a.State != nixdeploy.ApprovalRejected || a.DecidedBy != tc.by {
			t.Errorf("approval of #%d = %s by %s, want rejected by %s", tc.dep, a.State, a.DecidedBy, tc.by)
		}
		if d := h.deployment(tc.dep); d.State != nixdeploy.StateRejected {
			t.Errorf("#%d is %s, want rejected", tc.dep, d.State)
		}
		if m, _ := h.slack.Message(channel, tc.ts); !strings.Contains(m.Rendered(), "Rejected* by <@"+tc.by+">") {
			t.Errorf("message of #%d not updated:\n%s", tc.dep, m.Rendered())
		}
	}
	// A late approve on a rejected request does nothing.
	h.react(bob, "white_check_mark", channel, rk1)
	h.settle()
	if len(started) != 0 {
		t.Fatal("a rejected request ran")
	}
	if !contains(h.auditKinds(1), eve+" approval-ignored-not-approver") || !contains(h.auditKinds(1), bob+" rejected") {
		t.Errorf("audit #1 = %v", h.auditKinds(1))
	}
}

// TestRestartKeepsPendingApproval: a pending approval survives a restart
// (DB reopened, new Bot), the approval then still works, and the expiry
// of another pending approval is re-armed.
func TestRestartKeepsPendingApproval(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 2)
	h := newHarness(t, harnessOptions{started: started})
	h.command(alice, "install ganon")
	h.command(alice, "install rk1-node1")
	h.settle()
	msgs := h.slack.Messages()
	ganon, rk1 := msgs[0], msgs[1]
	if !strings.Contains(ganon.Text, "#1 install ganon") || !strings.Contains(rk1.Text, "#2 install rk1-node1") {
		t.Fatalf("unexpected messages %q, %q", ganon.Text, rk1.Text)
	}

	h.restart()
	h.clock.Advance(time.Minute)
	h.react(bob, "white_check_mark", ganon.Channel, ganon.TS)
	h.settle()
	if len(started) != 1 {
		t.Fatalf("approval after restart started %d deployments, want 1", len(started))
	}
	if d := h.deployment(1); d.State != nixdeploy.StateSucceeded {
		t.Errorf("#1 ended %s", d.State)
	}
	h.clock.Advance(14 * time.Minute)
	h.settle()
	if a := h.approval(rk1.Channel, rk1.TS); a.State != nixdeploy.ApprovalExpired {
		t.Errorf("re-armed expiry did not fire: %s", a.State)
	}
	if m, _ := h.slack.Message(rk1.Channel, rk1.TS); !strings.Contains(m.Rendered(), "Expired") {
		t.Errorf("expired message not updated after restart:\n%s", m.Rendered())
	}
}

// TestApprovalBoundToPlan: an approval is refused when the config changed
// what would be wiped, and a new request never inherits an old approval.
func TestApprovalBoundToPlan(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 4)
	h := newHarness(t, harnessOptions{started: started})

	h.command(alice, "install ganon")
	h.settle()
	first := h.approvalMessage()
	h.bot.SetConfig(testConfig(t, func(s string) string { return strings.Replace(s, "/dev/nvme0n1", "/dev/nvme1n1", 1) }))
	h.react(bob, "white_check_mark", first.Channel, first.TS)
	h.settle()
	if len(started) != 0 {
		t.Fatal("an approval for another disk ran the install")
	}
	if d := h.deployment(1); d.State != nixdeploy.StateCancelled {
		t.Errorf("#1 is %s, want cancelled", d.State)
	}
	if !contains(h.auditKinds(1), bob+" approval-refused-changed") {
		t.Errorf("audit = %v", h.auditKinds(1))
	}
	if m, _ := h.slack.Message(first.Channel, first.TS); !strings.Contains(m.Rendered(), "Void") {
		t.Errorf("message not marked void:\n%s", m.Rendered())
	}

	// Under the new config: request, approve, run. Then request again: the
	// new request waits for its own approval.
	h.command(alice, "install ganon")
	h.settle()
	second := h.approvalMessage()
	h.react(bob, "white_check_mark", second.Channel, second.TS)
	h.settle()
	if len(started) != 1 {
		t.Fatalf("%d runs, want 1", len(started))
	}
	h.command(alice, "install ganon")
	h.settle()
	third := h.approvalMessage()
	if third.TS == second.TS {
		t.Fatal("no new approval message for the new request")
	}
	h.react(bob, "white_check_mark", second.Channel, second.TS) // the old message again
	h.settle()
	if len(started) != 1 {
		t.Fatal("a new request inherited an older approval")
	}
	if a := h.approval(third.Channel, third.TS); a.State != nixdeploy.ApprovalPending || a.DeploymentID != 3 {
		t.Errorf("new approval = %+v", a)
	}
	fp1, fp3 := h.approval(first.Channel, first.TS).Fingerprint, h.approval(third.Channel, third.TS).Fingerprint
	if fp1 == fp3 {
		t.Error("fingerprint does not cover the disk")
	}
	want, err := fingerprintOf(h.bot.Config(), h.deployment(3))
	if err != nil || want != fp3 {
		t.Errorf("stored fingerprint %s, recomputed %s (%v)", fp3, want, err)
	}
}

// TestApprovalExpiredWhenTheReactionArrives: the expiry timer has not
// fired yet (late, as after a suspend), but the approval's time is over
// when an approver reacts: nothing starts, the approval ends expired, and
// the refusal is audited with the approver as actor. This reaches the
// expiry check on the reaction itself, which the timer otherwise hides.
func TestApprovalExpiredWhenTheReactionArrives(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started})
	h.command(alice, "install ganon")
	msg := h.approvalMessage()
	h.clock.Jump(15*time.Minute + time.Second)
	h.react(bob, "white_check_mark", msg.Channel, msg.TS)
	h.settle()
	if len(started) != 0 {
		t.Fatal("a reaction after ExpiresAt started the install")
	}
	if a := h.approval(msg.Channel, msg.TS); a.State != nixdeploy.ApprovalExpired {
		t.Errorf("approval %s, want expired", a.State)
	}
	if dep := h.deployment(1); dep.State != nixdeploy.StateExpired {
		t.Errorf("deployment %s, want expired", dep.State)
	}
	if kinds := h.auditKinds(1); !contains(kinds, bob+" approval-refused-expired") || contains(kinds, bob+" approved") {
		t.Errorf("audit = %v", kinds)
	}
	if got := h.ephemerals(bob); !anyContains(got, "This approval expired at 2026-11-26 22:15 UTC") {
		t.Errorf("bob was told %q", got)
	}
}
