package bot

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// maxBody bounds a request body; Slack's are a few KB.
const maxBody = 1 << 20

// HTTPHandler serves Slack's HTTP mode: POST /slack/commands for the slash
// command and POST /slack/events for the Events API. Every request must
// carry a valid signature over its raw body made with signingSecret and a
// timestamp within five minutes, or it gets 401.
func (b *Bot) HTTPHandler(signingSecret string) http.Handler {
	h := &httpAPI{b: b, secret: signingSecret}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slack/commands", h.commands)
	mux.HandleFunc("POST /slack/events", h.events)
	return mux
}

type httpAPI struct {
	b      *Bot
	secret string
}

// verified reads the body through slack-go's verifier (an HMAC-SHA256
// compared in constant time; it also refuses a stale timestamp) and
// returns it, or answers 401 and returns false.
func (h *httpAPI) verified(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	sv, err := slack.NewSecretsVerifier(r.Header, h.secret)
	if err != nil {
		h.b.log.Warn("slack request refused", "path", r.URL.Path, "reason", verifyReason(err), "remote", r.RemoteAddr)
		http.Error(w, "invalid request signature", http.StatusUnauthorized)
		return nil, false
	}
	body, err := io.ReadAll(io.TeeReader(http.MaxBytesReader(w, r.Body, maxBody), &sv))
	if err != nil {
		http.Error(w, "request body too large or unreadable", http.StatusBadRequest)
		return nil, false
	}
	if err := sv.Ensure(); err != nil {
		h.b.log.Warn("slack request refused", "path", r.URL.Path, "reason", "bad signature", "remote", r.RemoteAddr)
		http.Error(w, "invalid request signature", http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

func verifyReason(err error) string {
	switch {
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return "timestamp more than 5 minutes off"
	case errors.Is(err, slack.ErrMissingHeaders):
		return "missing signature headers"
	case errors.Is(err, slack.ErrInvalidConfiguration):
		return "no signing secret configured"
	}
	return "malformed signature"
}

// slashAck is the immediate, ephemeral answer to a slash command.
type slashAck struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

func (h *httpAPI) commands(w http.ResponseWriter, r *http.Request) {
	body, ok := h.verified(w, r)
	if !ok {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, "malformed form", http.StatusBadRequest)
		return
	}
	// A signed request can be replayed for five minutes, and Slack never
	// retries a slash command: a trigger_id seen before is a replay, and
	// doing it again would be a second deployment (issue 15, attack 6).
	if first, err := h.b.FirstTrigger(r.Context(), form.Get("trigger_id")); err != nil {
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	} else if !first {
		h.b.log.Warn("replayed slash command dropped", "trigger_id", form.Get("trigger_id"), "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(slashAck{ResponseType: "ephemeral", Text: "This command was already received."})
		return
	}
	rep := h.b.Command(Invocation{User: form.Get("user_id"), Channel: form.Get("channel_id"), Text: form.Get("text"), ResponseURL: form.Get("response_url")})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(slashAck{ResponseType: "ephemeral", Text: rep.Text})
}

func (h *httpAPI) events(w http.ResponseWriter, r *http.Request) {
	body, ok := h.verified(w, r)
	if !ok {
		return
	}
	ev, err := slackevents.ParseEvent(json.RawMessage(body), slackevents.OptionNoVerifyToken())
	if err != nil {
		// An inner event type slack-go does not know is not worth a retry.
		var outer struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(body, &outer) != nil {
			http.Error(w, "malformed event", http.StatusBadRequest)
			return
		}
		h.b.log.Debug("unparsed slack event ignored", "type", outer.Type, "err", err)
		w.WriteHeader(http.StatusOK)
		return
	}
	switch ev.Type {
	case slackevents.URLVerification:
		uv, _ := ev.Data.(*slackevents.EventsAPIURLVerificationEvent)
		if uv == nil {
			http.Error(w, "malformed challenge", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, uv.Challenge)
		return
	case slackevents.CallbackEvent:
		cb, _ := ev.Data.(*slackevents.EventsAPICallbackEvent)
		if cb == nil {
			http.Error(w, "malformed callback", http.StatusBadRequest)
			return
		}
		if err := h.b.Event(r.Context(), cb.EventID, ev.InnerEvent); err != nil {
			// Let Slack retry: the event id was not recorded.
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// triggerPrefix keeps trigger ids apart from event ids in the store's one
// table of seen Slack ids, which is pruned the same way.
const triggerPrefix = "trigger:"

// FirstTrigger records a slash command's trigger_id and reports whether
// it is new. A command without one (a chat that is not Slack) is new.
func (b *Bot) FirstTrigger(ctx context.Context, triggerID string) (bool, error) {
	if triggerID == "" {
		return true, nil
	}
	first, err := b.store.FirstSeen(ctx, triggerPrefix+triggerID)
	if err != nil {
		b.log.Error("record trigger id", "err", err)
	}
	return first, err
}

// Event handles one Events API callback, from HTTP or Socket Mode: a
// repeated event_id (Slack retries, including across our restarts, since
// the ids are stored) is dropped; a reaction is decided in the background.
// An error means the event was not recorded and should be retried.
func (b *Bot) Event(ctx context.Context, eventID string, inner slackevents.EventsAPIInnerEvent) error {
	var r Reaction
	switch ev := inner.Data.(type) {
	case *slackevents.ReactionAddedEvent:
		r = Reaction{User: ev.User, Name: ev.Reaction, Channel: ev.Item.Channel, TS: ev.Item.Timestamp}
	case *slackevents.ReactionRemovedEvent:
		r = Reaction{User: ev.User, Name: ev.Reaction, Channel: ev.Item.Channel, TS: ev.Item.Timestamp, Removed: true}
	default:
		return nil
	}
	if eventID == "" {
		b.log.Warn("event without event_id ignored", "type", inner.Type)
		return nil
	}
	first, err := b.store.FirstSeen(ctx, eventID)
	if err != nil {
		b.log.Error("record event id", "event_id", eventID, "err", err)
		return err
	}
	if !first {
		b.log.Info("duplicate event dropped", "event_id", eventID)
		return nil
	}
	b.React(r)
	return nil
}
