package bot_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// TestSocketMode runs the same handlers over Socket Mode: the slash
// command's ack carries the echo, envelopes are acked, a reaction event
// approves, and its redelivery is dropped by event_id.
func TestSocketMode(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 2)
	h := newHarness(t, harnessOptions{started: started})
	api := slack.New(token, slack.OptionAPIURL(h.slack.APIURL()), slack.OptionAppLevelToken("xapp-1-test"))
	client := socketmode.New(api, socketmode.OptionLog(log.New(io.Discard, "", 0)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.bot.RunSocketMode(ctx, client) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSocketMode: %v", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := h.slack.WaitSocket(wctx); err != nil {
		t.Fatal(err)
	}

	ack, err := h.slack.SocketSlash(wctx, slackfake.SlashCommand{UserID: alice, ChannelID: channel, Text: "install ganon"})
	if err != nil {
		t.Fatal(err)
	}
	var a struct{ ResponseType, Text string }
	if err := json.Unmarshal(ack, &a); err != nil || a.Text != "`/nixdeploy install ganon`" {
		t.Fatalf("ack payload %s (%v)", ack, err)
	}
	h.settle()
	msg := h.approvalMessage()
	for range 2 {
		if _, err := h.slack.SocketEvent(wctx, "EvSock0001", slackfake.ReactionAdded(bob, "white_check_mark", msg.Channel, msg.TS)); err != nil {
			t.Fatal(err)
		}
		h.settle()
	}
	if len(started) != 1 {
		t.Errorf("%d deployments started, want 1", len(started))
	}
	if n := strings.Count(strings.Join(h.auditKinds(1), "\n"), bob+" approved"); n != 1 {
		t.Errorf("approved %d times: %v", n, h.auditKinds(1))
	}
}
