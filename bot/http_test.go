package bot_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// TestSignatureRequired proves every endpoint refuses a request that Slack
// did not sign: a forged signature, a stale or future timestamp, missing
// headers. Nothing reaches the handlers.
func TestSignatureRequired(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := t.Context()
	cmd := slackfake.SlashCommand{UserID: alice, ChannelID: channel, Text: "switch ganon"}
	forged := &slackfake.Sender{BaseURL: h.srv.URL, Secret: "not-the-secret"}
	stale := &slackfake.Sender{BaseURL: h.srv.URL, Secret: secret, Now: func() time.Time { return time.Now().Add(-6 * time.Minute) }}
	future := &slackfake.Sender{BaseURL: h.srv.URL, Secret: secret, Now: func() time.Time { return time.Now().Add(6 * time.Minute) }}
	for _, tc := range []struct {
		name string
		send func() (slackfake.Response, error)
	}{
		{"forged slash", func() (slackfake.Response, error) { return forged.Slash(ctx, cmd) }},
		{"stale slash", func() (slackfake.Response, error) { return stale.Slash(ctx, cmd) }},
		{"future slash", func() (slackfake.Response, error) { return future.Slash(ctx, cmd) }},
		{"forged event", func() (slackfake.Response, error) {
			return forged.Event(ctx, "EvForged", slackfake.ReactionAdded(bob, "white_check_mark", channel, "1.1"))
		}},
		{"stale event", func() (slackfake.Response, error) {
			return stale.Event(ctx, "EvStale", slackfake.ReactionAdded(bob, "white_check_mark", channel, "1.1"))
		}},
		{"stale url_verification", func() (slackfake.Response, error) { return stale.URLVerification(ctx, "abc") }},
		{"unsigned", func() (slackfake.Response, error) {
			resp, err := http.Post(h.srv.URL+"/slack/commands", "application/x-www-form-urlencoded", strings.NewReader(cmd.Form().Encode()))
			if err != nil {
				return slackfake.Response{}, err
			}
			resp.Body.Close()
			return slackfake.Response{Status: resp.StatusCode}, nil
		}},
		{"body tampered after signing", func() (slackfake.Response, error) {
			body := cmd.Form().Encode()
			ts := time.Now().Unix()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+"/slack/commands", strings.NewReader(strings.Replace(body, "ganon", "rk1-node1", 1)))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
			req.Header.Set("X-Slack-Signature", slackfake.Sign(secret, ts, []byte(body)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return slackfake.Response{}, err
			}
			resp.Body.Close()
			return slackfake.Response{Status: resp.StatusCode}, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.send()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", resp.Status)
			}
		})
	}
	h.settle()
	deps, err := h.db.Deployments(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) != 0 || len(h.slack.Calls("chat.postMessage", "chat.postEphemeral")) != 0 {
		t.Errorf("an unsigned request had an effect: %d deployments, %d messages", len(deps), len(h.slack.Calls()))
	}
}

func TestURLVerification(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp, err := h.send.URLVerification(t.Context(), "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK || string(resp.Body) != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Errorf("url_verification answer = %d %q, want 200 and the challenge", resp.Status, resp.Body)
	}
}

// TestDuplicateEventHandledOnce sends one reaction event three times: as
// sent, as Slack's retry, and again after a restart on the reopened DB.
// Its effect (here: an audited, ignored non-approver reaction) happens once.
func TestDuplicateEventHandledOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.slash(alice, "install ganon")
	h.settle()
	msg := h.approvalMessage()

	h.reactID("Ev0DUP0001", carol, "white_check_mark", msg.Channel, msg.TS)
	h.settle()
	resp, err := h.send.Retry(t.Context(), "Ev0DUP0001", slackfake.ReactionAdded(carol, "white_check_mark", msg.Channel, msg.TS), 1)
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("retry: %v %d", err, resp.Status)
	}
	h.settle()
	h.restart()
	h.reactID("Ev0DUP0001", carol, "white_check_mark", msg.Channel, msg.TS)
	h.settle()

	n := 0
	for _, k := range h.auditKinds(1) {
		if k == carol+" approval-ignored-not-approver" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the duplicated event was handled %d times, want once; audit: %v", n, h.auditKinds(1))
	}
	if got := len(h.ephemerals(carol)); got != 1 {
		t.Errorf("carol was told %d times, want once", got)
	}
}

// TestMalformedEvents: garbage is a 400, an event type the bot does not
// handle is a 200 (so Slack does not retry it).
func TestMalformedEvents(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	resp, err := h.send.Post(ctx, "/slack/events", "application/json", []byte("{not json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusBadRequest {
		t.Errorf("garbage: status %d, want 400", resp.Status)
	}
	resp, err = h.send.Event(ctx, "EvOther", map[string]any{"type": "app_mention", "user": alice, "text": "hi", "channel": channel, "ts": "1.2"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK {
		t.Errorf("other event: status %d, want 200", resp.Status)
	}
}

// TestReplayedSlashCommandRunsOnce: one signed slash command posted twice
// within Slack's five minutes, byte for byte, makes one deployment; the
// replay is answered and dropped, also after a restart (issue 15, attack 6).
func TestReplayedSlashCommandRunsOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	fixed := time.Now()
	send := &slackfake.Sender{BaseURL: h.srv.URL, Secret: secret, Now: func() time.Time { return fixed }}
	body := []byte(slackfake.SlashCommand{UserID: alice, ChannelID: channel, Text: "install ganon", TriggerID: "1337.4242.replayme"}.Form().Encode())
	post := func() {
		t.Helper()
		r, err := send.Post(t.Context(), "/slack/commands", "application/x-www-form-urlencoded", body, nil)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("post: %v %d %s", err, r.Status, r.Body)
		}
		h.settle()
	}
	post()
	post()
	h.restart()
	post()
	if d := h.deployment(1); d.Action != nixdeploy.ActionInstall {
		t.Fatalf("deployment 1 = %+v", d)
	}
	if _, err := h.db.Deployment(t.Context(), 2); !errors.Is(err, nixdeploy.ErrNotFound) {
		t.Errorf("a replay made a second deployment (err %v)", err)
	}
	n := 0
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Versions[0], "Approval needed") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d approval messages, want 1", n)
	}
}
