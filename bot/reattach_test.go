package bot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
)

// reattacher is the fake deployer plus a Reattach that picks the
// deployment up after a restart, as deployer.Reattach does from the
// runner's log files, and finishes it.
type reattacher struct {
	*fakeDeployer
	reattached chan int64
}

func (r reattacher) Reattach(_ context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	r.reattached <- dep.ID
	for _, s := range sinks {
		s.Line(nixdeploy.LogLine{Seq: 100, Time: time.Now(), Host: dep.Hosts[0], Step: "nixos-rebuild", Stream: nixdeploy.StreamStdout, Text: "activating after the restart"})
	}
	return &nixdeploy.Report{DeploymentID: dep.ID, State: nixdeploy.StateSucceeded}, nil
}

// TestReattachCarriesOnTheSameMessage: a deployment whose long step was
// left running on the runner when the bot stopped is reattached by the
// next bot (runs.Recover), and its status message in the channel carries
// on and completes: no second status message is posted (issue 14).
func TestReattachCarriesOnTheSameMessage(t *testing.T) {
	var h *harness
	re := make(chan int64, 1)
	running := make(chan struct{})
	h = newHarness(t, harnessOptions{
		script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
			emit("nixos-rebuild", nixdeploy.StreamStdout, "building before the restart")
			// The step goes on on the runner; record it as deployer's
			// supervisor does.
			if err := h.db.StartRemoteStep(context.WithoutCancel(ctx), &nixdeploy.RemoteStep{DeploymentID: dep.ID, Host: dep.Hosts[0], Step: "nixos-rebuild",
				Runner: "local", Dir: "/tmp/tmp.x", Name: "nixos-rebuild", StartedAt: time.Now(), Timeout: time.Hour}); err != nil {
				t.Error(err)
			}
			close(running) // its status message was posted before the run began
			<-ctx.Done()   // the bot stops: the step is detached, not killed
			return bot.Result{State: nixdeploy.StateInterrupted, Err: nixdeploy.ErrShutdown}
		},
	})
	h.opts.deployer = func(*db.DB) bot.Deployer { return reattacher{fakeDeployer: h.deployer, reattached: re} }
	h.slash(alice, "switch ganon")
	select {
	case <-running:
	case <-time.After(30 * time.Second): // bounds a failure only
		t.Fatal("the deployment never ran")
	}
	first := h.deployment(1).MessageTS
	if first == "" {
		t.Fatal("the running deployment has no status message")
	}

	h.restart()
	select {
	case id := <-re:
		if id != 1 {
			t.Fatalf("reattached #%d", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the next bot did not reattach the deployment")
	}
	h.settle()

	d := h.deployment(1)
	if d.State != nixdeploy.StateSucceeded || d.MessageTS != first {
		t.Errorf("deployment = %s with message %s, want succeeded in the first message %s", d.State, d.MessageTS, first)
	}
	m, ok := h.slack.Message(d.Channel, first)
	if !ok || !strings.Contains(m.Rendered(), "succeeded") || !strings.Contains(m.Rendered(), "activating after the restart") {
		t.Errorf("the first status message did not complete: %q", m.Rendered())
	}
	statuses := 0
	for _, m := range h.slack.Messages() {
		if !m.Ephemeral && strings.Contains(m.Versions[0], "#1 switch ganon") {
			statuses++
		}
	}
	if statuses != 1 {
		t.Errorf("%d status messages for #1, want the one that carried on", statuses)
	}
}
