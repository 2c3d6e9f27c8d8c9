package bot

import (
	"context"
	"errors"
	"fmt"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/runs"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// Deploy runs a request that did not come from chat, such as a scheduled
// rebuild, through the same path as a chat request: the busy checks, one
// status message streamed to the fleet channel, the uploaded log and the
// audit trail. It blocks until the deployment ends and returns it as
// stored. A busy or locked host is an error wrapping nixdeploy.ErrHostBusy,
// before anything is stored. Destructive actions are refused: they need a
// person's approval. Once the bot is shutting down every request is refused
// with an error wrapping nixdeploy.ErrShutdown, before anything is stored.
func (b *Bot) Deploy(ctx context.Context, req nixdeploy.Request) (nixdeploy.Deployment, error) {
	if req.Action.Destructive() {
		return nixdeploy.Deployment{}, userf(nixdeploy.ErrUnauthorized, "%s needs an approval, so it cannot be started by %s", req.Action, req.Requester)
	}
	if b.isClosed() {
		return nixdeploy.Deployment{}, userf(nixdeploy.ErrShutdown, "nixdeploy is shutting down; %s %s was not started", req.Action, hostsText(req.Hosts))
	}
	if req.Source == "" {
		req.Source = nixdeploy.SourceSchedule
	}
	sub, err := b.life.Submit(ctx, runs.Request{Request: req, Channel: b.Config().Slack.Channel})
	if err != nil {
		if errors.Is(err, nixdeploy.ErrShutdown) {
			return sub.Deployment, userf(nixdeploy.ErrShutdown, "nixdeploy is shutting down; %s %s was not started", req.Action, hostsText(req.Hosts))
		}
		if sub.Deployment.ID == 0 {
			return sub.Deployment, b.word(Result{Err: err})
		}
		return sub.Deployment, fmt.Errorf("deploy %s %v: %w", req.Action, req.Hosts, b.word(Result{Err: err}))
	}
	select {
	case <-sub.Done:
	case <-ctx.Done():
		if _, err := b.life.Cancel(context.WithoutCancel(ctx), sub.Deployment.ID, ""); err != nil {
			b.log.Warn("cancel deployment", "deployment", sub.Deployment.ID, "err", err)
		}
		<-sub.Done
	}
	return b.store.Deployment(context.WithoutCancel(ctx), sub.Deployment.ID)
}

// Announce posts a notice to the fleet channel, such as a schedule's run
// summary.
func (b *Bot) Announce(ctx context.Context, text string) error {
	_, err := b.chat.Post(ctx, b.Config().Slack.Channel, Message{Kind: KindNotice, Text: text})
	return err
}

// Summary posts a scheduled run's summary to the fleet channel: the bot is
// the scheduler's Notifier as it is.
func (b *Bot) Summary(ctx context.Context, s schedules.Summary) error {
	return b.Announce(ctx, s.Text())
}

// Waiting says in the fleet channel that a scheduled run waits for a busy
// or locked host.
func (b *Bot) Waiting(ctx context.Context, w schedules.Wait) error {
	return b.Announce(ctx, w.Text())
}

var (
	_ schedules.Notifier     = (*Bot)(nil)
	_ schedules.WaitNotifier = (*Bot)(nil)
)
