package bot_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
)

// TestShutdown: once shutdown begins, new commands are refused; a
// deployment that finishes within the grace period succeeds; one still
// running when it ends is recorded and shown as interrupted, and the
// channel is told.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan nixdeploy.Deployment, 2)
	h := newHarness(t, harnessOptions{started: started, script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		emit("nixos-rebuild", nixdeploy.StreamStderr, "building the system configuration...")
		if dep.Hosts[0] == "ganon" {
			<-ctx.Done()
			return bot.Result{State: nixdeploy.StateInterrupted, Host: "ganon", Step: "nixos-rebuild", ExitCode: -1, Err: context.Cause(ctx)}
		}
		<-release
		return bot.Result{State: nixdeploy.StateSucceeded}
	}})
	h.slash(alice, "switch ganon")
	h.slash(alice, "switch rk1-node1")
	ids := map[string]int64{}
	for range 2 {
		d := <-started
		ids[d.Hosts[0]] = d.ID
	}

	grace, endGrace := context.WithCancel(t.Context())
	done := make(chan []nixdeploy.Deployment, 1)
	go func() { done <- h.bot.Shutdown(grace) }()
	// Shutdown refuses new work before it waits.
	deadline := time.After(20 * time.Second)
	for !strings.Contains(h.slash(bob, "status"), "shutting down") {
		select {
		case <-done:
			t.Fatal("Shutdown returned with deployments running")
		case <-deadline:
			t.Fatal("commands are still taken")
		default:
		}
	}
	close(release)
	for {
		changed := h.slack.Changed()
		if h.deployment(ids["rk1-node1"]).State == nixdeploy.StateSucceeded {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("rk1-node1 did not finish within the grace period")
		}
	}
	endGrace()
	stopped := <-done

	if len(stopped) != 1 || stopped[0].ID != ids["ganon"] {
		t.Fatalf("Shutdown returned %+v, want ganon's deployment", stopped)
	}
	if d := h.deployment(ids["ganon"]); d.State != nixdeploy.StateInterrupted {
		t.Errorf("ganon's deployment is %s, want interrupted", d.State)
	}
	d := h.deployment(ids["ganon"])
	m, _ := h.slack.Message(d.Channel, d.MessageTS)
	if last := m.Versions[len(m.Versions)-1]; !strings.Contains(last, "— interrupted after") {
		t.Errorf("final status message:\n%s", last)
	}
	var notices []string
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Versions[0], "shutting down") {
			notices = append(notices, m.Versions[0])
		}
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "switch ganon") || strings.Contains(notices[0], "rk1-node1") {
		t.Errorf("shutdown notices: %q", notices)
	}
	if !slices.Contains(h.auditKinds(ids["ganon"]), "nixdeploy interrupted") {
		t.Errorf("audit of ganon: %v", h.auditKinds(ids["ganon"]))
	}
}
