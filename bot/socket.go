package bot

import (
	"context"
	"errors"
	"fmt"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// RunSocketMode serves Slack over Socket Mode until ctx ends: every
// envelope is acked (a slash command's ack carries the same ephemeral echo
// as in HTTP mode) and handed to the same handlers.
func (b *Bot) RunSocketMode(ctx context.Context, client *socketmode.Client) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- client.RunContext(ctx) }()
	for {
		select {
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("socket mode: %w", err)
		case evt := <-client.Events:
			if err := b.socketEvent(ctx, client, evt); err != nil {
				return err
			}
		}
	}
}

func (b *Bot) socketEvent(ctx context.Context, client *socketmode.Client, evt socketmode.Event) error {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		b.log.Info("socket mode connecting")
	case socketmode.EventTypeConnected:
		b.log.Info("socket mode connected")
	case socketmode.EventTypeConnectionError:
		b.log.Warn("socket mode connection error; retrying")
	case socketmode.EventTypeInvalidAuth:
		return errors.New("socket mode: Slack refused the app-level token (SLACK_APP_TOKEN); create one with connections:write")
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || evt.Request == nil {
			return nil
		}
		rep := b.Command(Invocation{User: cmd.UserID, Channel: cmd.ChannelID, Text: cmd.Text, ResponseURL: cmd.ResponseURL})
		if err := client.AckCtx(ctx, evt.Request.EnvelopeID, slashAck{ResponseType: "ephemeral", Text: rep.Text}); err != nil {
			b.log.Error("socket mode ack", "err", err)
		}
	case socketmode.EventTypeEventsAPI:
		ev, ok := evt.Data.(slackevents.EventsAPIEvent)
		if !ok || evt.Request == nil {
			return nil
		}
		cb, _ := ev.Data.(*slackevents.EventsAPICallbackEvent)
		if cb != nil {
			if err := b.Event(ctx, cb.EventID, ev.InnerEvent); err != nil {
				// Not acked: Slack delivers it again.
				return nil
			}
		}
		if err := client.AckCtx(ctx, evt.Request.EnvelopeID, nil); err != nil {
			b.log.Error("socket mode ack", "err", err)
		}
	case socketmode.EventTypeInteractive:
		if evt.Request != nil {
			_ = client.AckCtx(ctx, evt.Request.EnvelopeID, nil)
		}
	}
	return nil
}
