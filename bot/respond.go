package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/slack-go/slack"
)

// respondTimeout bounds one post to a response_url.
const respondTimeout = 10 * time.Second

// tell shows m to the user who typed the command. chat.postEphemeral
// fails where the bot is not a member: a DM, a channel it was not invited
// to (channel_not_found, not_in_channel). The command's response_url
// works there, so the answer goes that way instead of into the log only
// (issue 15, attack 8).
func (b *Bot) tell(ctx context.Context, inv Invocation, m Message) error {
	ctx = context.WithoutCancel(ctx)
	err := b.chat.Ephemeral(ctx, inv.Channel, inv.User, m)
	if err == nil || inv.ResponseURL == "" {
		return err
	}
	rerr := respond(ctx, inv.ResponseURL, m)
	if rerr == nil {
		b.log.Info("answered through response_url", "channel", inv.Channel, "user", inv.User, "ephemeral_err", slackCode(err))
		return nil
	}
	return errors.Join(err, fmt.Errorf("response_url: %w", rerr))
}

// respond posts m, ephemeral, to a slash command's response_url.
func respond(ctx context.Context, url string, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, respondTimeout)
	defer cancel()
	msg := &slack.WebhookMessage{Text: clip(m.Text, MaxText), ResponseType: slack.ResponseTypeEphemeral}
	if blocks := sectionBlocks(m); len(blocks) > 0 {
		msg.Blocks = &slack.Blocks{BlockSet: blocks}
	}
	return slack.PostWebhookCustomHTTPContext(ctx, url, &http.Client{Timeout: respondTimeout}, msg)
}

// slackCode is the Slack error code in err, for logs.
func slackCode(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	return "error"
}
