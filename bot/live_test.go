package bot_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// TestLiveBoardWhenCrowded: three deployments streaming in one channel
// move their progress to one shared message, the channel's live board,
// instead of each updating its own (Slack's chat.update budget is the
// workspace's, so K own messages each move K times slower; issue 15, bench
// row 7). While the board runs, no deployment's own message changes, and
// the ones that started in the crowd post none; the board shows every
// one's newest line; at the end each deployment's message has its outcome
// and the board says it ended.
func TestLiveBoardWhenCrowded(t *testing.T) {
	cfg := testConfig(t, func(s string) string {
		return s + "\n[[hosts]]\nname = \"rk1-node2\"\naddress = \"192.0.2.12\"\nsystem = \"aarch64-linux\"\ndisk = \"/dev/mmcblk0\"\n"
	})
	phase1, phase2 := make(chan struct{}), make(chan struct{})
	h := newHarness(t, harnessOptions{cfg: cfg, script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		host := dep.Hosts[0]
		emit("nixos-rebuild", nixdeploy.StreamStdout, "first line of "+host)
		<-phase1
		emit("nixos-rebuild", nixdeploy.StreamStdout, "second line of "+host)
		<-phase2
		return bot.Result{State: nixdeploy.StateSucceeded}
	}})
	var once1, once2 sync.Once
	release1 := func() { once1.Do(func() { close(phase1) }) }
	release2 := func() { once2.Do(func() { close(phase2) }) }
	t.Cleanup(func() { release1(); release2() }) // a failure must not leave the scripts blocked
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go h.clock.autoAdvance(ctx)
	for _, host := range []string{"ganon", "rk1-node1", "rk1-node2"} {
		h.slash(alice, "switch "+host)
	}

	waitBoard(t, h, "first line of ")
	// The first deployment posted its own message before the channel was
	// crowded; the others post none while the board runs (Slack allows
	// about one post a second in a channel). From here on no own message
	// changes.
	own := map[int64]int{}
	for id := int64(1); id <= 3; id++ {
		d := h.deployment(id)
		m, ok := h.slack.Message(d.Channel, d.MessageTS)
		switch {
		case id == 1 && !ok:
			t.Fatalf("deployment 1 posted no message before the crowd")
		case id > 1 && d.MessageTS != "":
			t.Errorf("deployment %d posted its own message in a crowded channel: %q", id, m.Rendered())
		}
		own[id] = len(m.Versions)
	}
	release1()
	board := waitBoard(t, h, "second line of ")
	for id := int64(1); id <= 3; id++ {
		d := h.deployment(id)
		m, _ := h.slack.Message(d.Channel, d.MessageTS)
		if len(m.Versions) != own[id] {
			t.Errorf("deployment %d's own message changed while the board ran: %q", id, m.Versions[len(m.Versions)-1])
		}
	}
	release2()
	h.settle()

	for id := int64(1); id <= 3; id++ {
		d := h.deployment(id)
		m, ok := h.slack.Message(d.Channel, d.MessageTS)
		if !ok || !strings.Contains(m.Rendered(), "succeeded") {
			t.Errorf("deployment %d's final message: %q", id, m.Rendered())
		}
	}
	m, _ := h.slack.Message(channel, board.TS)
	if r := m.Rendered(); !strings.Contains(r, "Live progress* ended") {
		t.Errorf("the board's last version does not say it ended: %q", r)
	}
	// Each deployment is shown once more after it ended, with its last
	// lines, before it leaves the board.
	for id, host := range map[int]string{1: "ganon", 2: "rk1-node1", 3: "rk1-node2"} {
		want := fmt.Sprintf("switch %s* — ended after", host)
		shown := false
		for _, v := range m.Versions {
			if i := strings.Index(v, want); i >= 0 && strings.Contains(v[i:], "second line of "+host) {
				shown = true
			}
		}
		if !shown {
			t.Errorf("deployment %d was never shown ended with its last line", id)
		}
	}
	boards := 0
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Versions[0], "Live progress") {
			boards++
		}
	}
	if boards != 1 {
		t.Errorf("%d boards posted, want 1", boards)
	}
}

// TestNoBoardForOne: a lone deployment updates its own message, as
// before, and no board is posted.
func TestNoBoardForOne(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go h.clock.autoAdvance(ctx)
	h.command(alice, "switch ganon")
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Rendered(), "Live progress") {
			t.Fatalf("a board was posted for one deployment: %q", m.Rendered())
		}
	}
	d := h.deployment(1)
	if m, _ := h.slack.Message(d.Channel, d.MessageTS); len(m.Versions) < 2 {
		t.Errorf("the lone deployment's message was never updated: %v", m.Versions)
	}
}

// waitBoard waits until the channel's live board shows prefix+host for
// each of the three hosts, and returns it.
func waitBoard(t *testing.T, h *harness, prefix string) slackfake.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range h.slack.Messages() {
			r := m.Rendered()
			if strings.Contains(r, "Live progress* of the 3") && strings.Contains(r, prefix+"ganon") &&
				strings.Contains(r, prefix+"rk1-node1") && strings.Contains(r, prefix+"rk1-node2") {
				return m
			}
		}
		if time.Now().After(deadline) {
			for _, m := range h.slack.Messages() {
				t.Logf("message %s: %q", m.TS, m.Rendered())
			}
			t.Fatalf("no live board showed %q for all three", prefix)
		}
		select {
		case <-h.slack.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
