package bot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/runs"
)

// hookStore runs afterApprove once an approval is recorded as approved,
// before the bot goes on to start the deployment: the window a cancel can
// race into.
type hookStore struct {
	*db.DB
	afterApprove func()
}

func (s *hookStore) DecideApproval(ctx context.Context, id int64, st nixdeploy.ApprovalState, by string) (bool, error) {
	ok, err := s.DB.DecideApproval(ctx, id, st, by)
	if ok && err == nil && st == nixdeploy.ApprovalApproved && s.afterApprove != nil {
		s.afterApprove()
	}
	return ok, err
}

// A cancel that arrives between the approval and the start has one
// outcome: the deployment is cancelled, nothing runs, and the approval
// message, the reply and the record all say so. (The old bot replied
// "Cancelled #1." and then ran the install.)
func TestCancelRacingApproveHasOneOutcome(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	var h *harness
	hs := &hookStore{}
	h = newHarness(t, harnessOptions{started: started, store: func(d *db.DB) runs.Store {
		hs.DB = d
		return hs
	}})
	h.command(alice, "install ganon")
	msg := h.approvalMessage()
	hs.afterApprove = func() {
		h.slash(alice, "cancel 1")
		deadline := time.Now().Add(30 * time.Second)
		for len(h.ephemerals(alice)) == 0 {
			if time.Now().After(deadline) {
				t.Error("no reply to the cancel")
				return
			}
			select {
			case <-time.After(5 * time.Millisecond):
			case <-t.Context().Done():
				return
			}
		}
	}
	h.react(bob, "white_check_mark", msg.Channel, msg.TS)
	h.settle()

	if len(started) != 0 {
		t.Fatal("the install ran after the requester was told it was cancelled")
	}
	if dep := h.deployment(1); dep.State != nixdeploy.StateCancelled {
		t.Errorf("deployment recorded %s, want cancelled", dep.State)
	}
	if got := h.ephemerals(alice); len(got) != 1 || !strings.Contains(got[0], "Cancelled #1") {
		t.Errorf("replies to the cancel: %q", got)
	}
	m, _ := h.slack.Message(msg.Channel, msg.TS)
	if text := m.Rendered(); strings.Contains(text, "running as #1") || !strings.Contains(text, "not started") {
		t.Errorf("approval message disagrees with the cancel:\n%s", text)
	}
}

// A process killed between recording an approval and starting the run
// leaves the request approved but not started. After the restart it is
// ended with a sentence, the channel is told it did not run, and nothing
// runs: it is never left "awaiting approval" for ever.
func TestApprovedThenKilledBeforeStart(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started})
	h.command(alice, "install ganon")
	msg := h.approvalMessage()
	a := h.approval(msg.Channel, msg.TS)
	// What the approve handler records first; the process dies before
	// it starts the run.
	if ok, err := h.db.DecideApproval(t.Context(), a.ID, nixdeploy.ApprovalApproved, bob); err != nil || !ok {
		t.Fatalf("approve: %v %v", ok, err)
	}
	h.restart()
	h.settle()
	if len(started) != 0 {
		t.Fatal("the install ran after the restart without anyone asking again")
	}
	dep := h.deployment(1)
	if dep.State != nixdeploy.StateInterrupted || !strings.Contains(dep.Error, "request it again") {
		t.Fatalf("after the restart #1 is %s (%q), want interrupted with a sentence", dep.State, dep.Error)
	}
	var told bool
	for _, m := range h.slack.Messages() {
		told = told || (!m.Ephemeral && strings.Contains(m.Rendered(), "#1 install ganon") && strings.Contains(m.Rendered(), "did not run"))
	}
	if !told {
		t.Error("the channel was not told that the approved install did not run")
	}
}

// A host claimed by a deployment of another nixdeploy process on the same
// database is busy for this one's requests too: refused before anything
// is stored, and nothing runs.
func TestHostClaimedByAnotherProcessIsBusy(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started})
	other, _, err := db.Open(t.Context(), h.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.ClaimHosts(t.Context(), 42, []string{"rk1-node1"}); err != nil {
		t.Fatal(err)
	}
	h.command(alice, "switch rk1-node1")
	if len(started) != 0 {
		t.Fatal("a switch ran on a host another process is deploying")
	}
	if got := h.ephemerals(alice); len(got) != 1 || !strings.Contains(got[0], "rk1-node1 is busy with deployment #42, run by nixdeploy pid ") {
		t.Errorf("replies: %q", got)
	}
	if deps, _ := h.db.Deployments(t.Context(), "", 5); len(deps) != 0 {
		t.Errorf("a refused request stored deployments: %+v", deps)
	}
}
