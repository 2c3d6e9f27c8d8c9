package slackfake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SlashCommand is what Slack posts for a slash command. Empty fields get
// plausible defaults.
type SlashCommand struct {
	Command   string // default "/nixdeploy"
	Text      string
	UserID    string
	UserName  string
	ChannelID string
	TeamID    string
	TriggerID string
	// ResponseURL defaults to an address that answers nothing; take one
	// from Server.ResponseURL for a command whose answer matters.
	ResponseURL string
}

func (c SlashCommand) fields() map[string]string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return map[string]string{
		"token":        "verification-token-unused",
		"team_id":      def(c.TeamID, TeamID),
		"team_domain":  "fake",
		"channel_id":   def(c.ChannelID, "C0FLEET01"),
		"channel_name": "fleet",
		"user_id":      c.UserID,
		"user_name":    def(c.UserName, c.UserID),
		"command":      def(c.Command, "/nixdeploy"),
		"text":         c.Text,
		"api_app_id":   "A0FAKE0001",
		"response_url": def(c.ResponseURL, "https://hooks.slack.invalid/commands/T0FAKE0001/1/x"),
		"trigger_id":   def(c.TriggerID, newTriggerID()),
	}
}

// newTriggerID is unique per command, as Slack's are: the bot drops a
// trigger_id it has seen.
func newTriggerID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%d.%d.%x", time.Now().Unix(), 1000+int(b[0]), b)
}

// Form is the command as the urlencoded body Slack posts.
func (c SlashCommand) Form() url.Values {
	v := url.Values{}
	for k, s := range c.fields() {
		v.Set(k, s)
	}
	return v
}

// ReactionAdded is the inner event of a reaction_added callback.
func ReactionAdded(user, reaction, channel, ts string) map[string]any {
	return reactionEvent("reaction_added", user, reaction, channel, ts)
}

// ReactionRemoved is the inner event of a reaction_removed callback.
func ReactionRemoved(user, reaction, channel, ts string) map[string]any {
	return reactionEvent("reaction_removed", user, reaction, channel, ts)
}

func reactionEvent(typ, user, reaction, channel, ts string) map[string]any {
	return map[string]any{
		"type":      typ,
		"user":      user,
		"reaction":  reaction,
		"item_user": BotUserID,
		"item":      map[string]any{"type": "message", "channel": channel, "ts": ts},
		"event_ts":  ts + "1",
	}
}

// callback wraps an inner event in the event_callback envelope.
func callback(eventID string, event any) map[string]any {
	return map[string]any{
		"token":        "verification-token-unused",
		"team_id":      TeamID,
		"api_app_id":   "A0FAKE0001",
		"event":        event,
		"type":         "event_callback",
		"event_id":     eventID,
		"event_time":   baseTS,
		"authed_users": []string{BotUserID},
	}
}

// Sign returns the X-Slack-Signature header value for body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:", ts)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Sender posts signed requests to a bot's HTTP endpoints, as Slack does.
type Sender struct {
	// BaseURL is the bot's server, e.g. an httptest server's URL.
	BaseURL string
	// Secret is the signing secret to sign with (a wrong one forges).
	Secret string
	// Now is the clock for X-Slack-Request-Timestamp; default time.Now.
	Now func() time.Time
	// Client defaults to http.DefaultClient.
	Client *http.Client
}

// Response is a bot's answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Slash posts a signed slash command to /slack/commands.
func (s *Sender) Slash(ctx context.Context, c SlashCommand) (Response, error) {
	return s.Post(ctx, "/slack/commands", "application/x-www-form-urlencoded", []byte(c.Form().Encode()), nil)
}

// Event posts a signed event callback to /slack/events.
func (s *Sender) Event(ctx context.Context, eventID string, event any) (Response, error) {
	body, err := json.Marshal(callback(eventID, event))
	if err != nil {
		return Response{}, err
	}
	return s.Post(ctx, "/slack/events", "application/json", body, nil)
}

// Retry posts a signed event callback marked as Slack's retry number n.
func (s *Sender) Retry(ctx context.Context, eventID string, event any, n int) (Response, error) {
	body, err := json.Marshal(callback(eventID, event))
	if err != nil {
		return Response{}, err
	}
	h := http.Header{"X-Slack-Retry-Num": {strconv.Itoa(n)}, "X-Slack-Retry-Reason": {"http_timeout"}}
	return s.Post(ctx, "/slack/events", "application/json", body, h)
}

// URLVerification posts the challenge Slack sends when the events URL is
// configured.
func (s *Sender) URLVerification(ctx context.Context, challenge string) (Response, error) {
	body, err := json.Marshal(map[string]string{"token": "verification-token-unused", "challenge": challenge, "type": "url_verification"})
	if err != nil {
		return Response{}, err
	}
	return s.Post(ctx, "/slack/events", "application/json", body, nil)
}

// Post sends body to path with a signature over it.
func (s *Sender) Post(ctx context.Context, path, contentType string, body []byte, extra http.Header) (Response, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ts := now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", Sign(s.Secret, ts, body))
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}
