package slackfake_test

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

func newClient(t *testing.T) (*slackfake.Server, *slack.Client) {
	t.Helper()
	s := slackfake.New(slackfake.Options{BotToken: "xoxb-fake"})
	t.Cleanup(s.Close)
	return s, slack.New("xoxb-fake", slack.OptionAPIURL(s.APIURL()))
}

// TestMessages: ts values look like Slack's and count up; updates apply;
// unknown messages and bad tokens get Slack's error codes.
func TestMessages(t *testing.T) {
	s, api := newClient(t)
	ctx := t.Context()
	_, ts1, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("one", false))
	if err != nil {
		t.Fatal(err)
	}
	_, ts2, _ := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("two", false),
		slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "*block*", false, false), nil, nil)))
	if ts1 != "1732662000.000101" || ts2 != "1732662000.000102" {
		t.Errorf("ts = %s, %s", ts1, ts2)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts1, slack.MsgOptionText("one, edited", false)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", "1.2", slack.MsgOptionText("x", false)); err == nil || err.Error() != "message_not_found" {
		t.Errorf("update of a missing message: %v", err)
	}
	m, _ := s.Message("C1", ts1)
	if m.Text != "one, edited" || len(m.Versions) != 2 {
		t.Errorf("message = %+v", m)
	}
	if m2, _ := s.Message("C1", ts2); m2.Rendered() != "two\n*block*" {
		t.Errorf("rendered = %q", m2.Rendered())
	}
	if err := api.AddReactionContext(ctx, "x", slack.NewRefToMessage("C1", ts1)); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PostEphemeralContext(ctx, "C1", "U1", slack.MsgOptionText("psst", false)); err != nil {
		t.Fatal(err)
	}
	bad := slack.New("xoxb-other", slack.OptionAPIURL(s.APIURL()))
	if _, err := bad.AuthTestContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Errorf("bad token: %v", err)
	}
	calls := s.Calls()
	if len(calls) != 7 || calls[0].Method != "chat.postMessage" || calls[0].Params.Get("text") != "one" || calls[0].Token != "xoxb-fake" || calls[0].Params.Has("token") {
		t.Errorf("calls = %+v", calls)
	}
}

func TestRateLimit(t *testing.T) {
	s, api := newClient(t)
	s.RateLimit("chat.update", 1, 2*time.Second)
	_, ts, _ := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("x", false))
	_, _, _, err := api.UpdateMessageContext(t.Context(), "C1", ts, slack.MsgOptionText("y", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
		t.Fatalf("first update: %v", err)
	}
	if _, _, _, err := api.UpdateMessageContext(t.Context(), "C1", ts, slack.MsgOptionText("y", false)); err != nil {
		t.Errorf("second update: %v", err)
	}
	if c := s.Calls("chat.update"); len(c) != 2 || c[0].Status != 429 || c[1].Status != 200 {
		t.Errorf("calls = %+v", c)
	}
}

// TestUpload: slack-go's three-step upload lands the whole content in the
// thread; a zero size is refused by slack-go before any call.
func TestUpload(t *testing.T) {
	s, api := newClient(t)
	_, ts, _ := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("x", false))
	content := strings.Repeat("line\n", 5000)
	_, err := api.UploadFileContext(t.Context(), slack.UploadFileParameters{
		Reader: strings.NewReader(content), FileSize: len(content), Filename: "log.txt", Title: "Log", Channel: "C1", ThreadTimestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	f := s.Files()
	if len(f) != 1 || !bytes.Equal(f[0].Content, []byte(content)) || f[0].ThreadTS != ts || f[0].Length != len(content) || f[0].Title != "Log" {
		t.Errorf("files = %+v", f)
	}
	var methods []string
	for _, c := range s.Calls() {
		methods = append(methods, c.Method)
	}
	if got := strings.Join(methods, " "); got != "chat.postMessage files.getUploadURLExternal upload files.completeUploadExternal" {
		t.Errorf("calls: %s", got)
	}
	if _, err := api.UploadFileContext(t.Context(), slack.UploadFileParameters{Reader: strings.NewReader(""), Filename: "x", Channel: "C1"}); err == nil {
		t.Error("a zero FileSize was accepted")
	}
}

// TestSign: slack-go's verifier accepts what Sign produces.
func TestSign(t *testing.T) {
	body := []byte("text=status&user_id=U1")
	ts := time.Now().Unix()
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	h.Set("X-Slack-Signature", slackfake.Sign("secret", ts, body))
	sv, err := slack.NewSecretsVerifier(h, "secret")
	if err != nil {
		t.Fatal(err)
	}
	sv.Write(body)
	if err := sv.Ensure(); err != nil {
		t.Errorf("signature refused: %v", err)
	}
}

// TestMembershipAndResponseURL: posting where the bot is not a member gets
// Slack's codes; a response_url answers there, five times, then no more.
func TestMembershipAndResponseURL(t *testing.T) {
	s := slackfake.New(slackfake.Options{BotToken: "xoxb-fake", Members: map[string][]string{
		"C1": {slackfake.BotUserID, "U1"}, "C2": {"U1"}, "G1": {"U1"}, "D1": {"U1", "U2"},
	}})
	defer s.Close()
	api := slack.New("xoxb-fake", slack.OptionAPIURL(s.APIURL()))
	ctx := t.Context()
	for _, tc := range []struct{ ch, user, code string }{
		{"C1", "U1", ""}, {"C1", "U9", "user_not_in_channel"}, {"C2", "U1", "not_in_channel"},
		{"G1", "U1", "channel_not_found"}, {"D1", "U1", "channel_not_found"}, {"C9", "U1", "channel_not_found"},
	} {
		_, err := api.PostEphemeralContext(ctx, tc.ch, tc.user, slack.MsgOptionText("hi", false))
		var se slack.SlackErrorResponse
		if got := ""; err != nil {
			if !errors.As(err, &se) {
				t.Fatalf("%s/%s: %v", tc.ch, tc.user, err)
			}
			got = se.Err
			if got != tc.code {
				t.Errorf("ephemeral %s/%s: %q, want %q", tc.ch, tc.user, got, tc.code)
			}
		} else if tc.code != "" {
			t.Errorf("ephemeral %s/%s passed, want %q", tc.ch, tc.user, tc.code)
		}
	}
	ru := s.ResponseURL("D1", "U1")
	for i := range 6 {
		err := slack.PostWebhookContext(ctx, ru, &slack.WebhookMessage{Text: "answer", ResponseType: "ephemeral"})
		if (err == nil) != (i < 5) {
			t.Errorf("use %d of the response_url: %v", i+1, err)
		}
	}
	var n int
	for _, m := range s.Messages() {
		if m.Channel == "D1" && m.User == "U1" && m.Ephemeral && m.Text == "answer" {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d answers kept, want 5", n)
	}
}

// TestPerMinuteLimit: past its calls per minute a method answers 429 with
// Retry-After, which slack-go turns into a RateLimitedError.
func TestPerMinuteLimit(t *testing.T) {
	s := slackfake.New(slackfake.Options{BotToken: "xoxb-fake", PerMinute: map[string]int{"chat.postMessage": 3}})
	defer s.Close()
	api := slack.New("xoxb-fake", slack.OptionAPIURL(s.APIURL()))
	for i := range 4 {
		_, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false))
		var rl *slack.RateLimitedError
		switch {
		case i < 3 && err != nil:
			t.Fatalf("call %d: %v", i+1, err)
		case i == 3 && (!errors.As(err, &rl) || rl.RetryAfter < time.Second || rl.RetryAfter > time.Minute):
			t.Fatalf("call 4: %v, want a 429 with Retry-After", err)
		}
	}
	if c := s.Calls("chat.postMessage"); len(c) != 4 || c[3].Status != http.StatusTooManyRequests {
		t.Errorf("calls %+v", c)
	}
}
