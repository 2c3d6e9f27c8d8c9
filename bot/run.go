package bot

import (
	"context"
	"errors"
	"fmt"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/runs"
)

// The bot is the lifecycle's Presenter: runs decides and records, the bot
// shows people what happened (approval messages, status messages, the
// log in the thread) and words every error.
var _ runs.Presenter = (*Bot)(nil)

// Result is how a deployment run ended (runs.Result).
type Result = runs.Result

// AskApproval posts the approval message of a and seeds its reactions.
func (b *Bot) AskApproval(ctx context.Context, dep nixdeploy.Deployment, a nixdeploy.Approval, channel string) (string, error) {
	cfg := b.Config()
	hosts, err := plan(cfg, dep)
	if err != nil {
		return "", err
	}
	ts, err := b.chat.Post(ctx, channel, approvalMessage(dep, hosts, a, cfg, ""))
	if err != nil {
		return "", err
	}
	// Seed the two reactions so approving is one click; the bot's own
	// reactions are ignored when they come back as events.
	for _, name := range []string{cfg.Slack.ApproveReaction, cfg.Slack.RejectReaction} {
		if err := b.chat.React(ctx, channel, ts, name); err != nil {
			b.log.Warn("seed reaction", "approval", a.ID, "reaction", name, "err", err)
		}
	}
	return ts, nil
}

// Decided rewrites the approval message to say what became of it.
func (b *Bot) Decided(ctx context.Context, d runs.Decision) {
	a, by, at := d.Approval, mention(d.By), utc(d.At)
	var decision string
	switch d.Kind {
	case runs.Approved:
		decision = fmt.Sprintf(":white_check_mark: *Approved* by %s at %s — running as #%d, progress below.", by, at, d.Deployment.ID)
	case runs.NotStarted:
		var ns *runs.NotStartedError
		if !errors.As(d.Why, &ns) {
			b.observe(d.Deployment, d.Deployment.State, 0)
		}
		if a.ID == 0 {
			return
		}
		decision = fmt.Sprintf(":octagonal_sign: *Approved* by %s at %s, but not started: %s", by, at, UserMessage(b.word(Result{Err: d.Why})))
	case runs.Rejected:
		decision = fmt.Sprintf(":no_entry_sign: *Rejected* by %s at %s.", by, at)
	case runs.Expired:
		decision = fmt.Sprintf(":hourglass: *Expired* at %s: nobody approved in time. Request it again if it is still wanted.", utc(a.ExpiresAt))
	case runs.Void:
		decision = ":no_entry: *Void*: the plan (host, address, disk, flake or installer) changed since this was requested, so this approval no longer applies. Request it again."
	case runs.Cancelled:
		decision = fmt.Sprintf(":octagonal_sign: *Cancelled* by %s at %s.", by, at)
	default:
		return
	}
	if d.Kind != runs.Approved && d.Kind != runs.NotStarted {
		b.observe(d.Deployment, d.Deployment.State, 0)
	}
	if err := b.rewriteApproval(ctx, a, decision); err != nil {
		b.log.Warn("rewrite approval message", "approval", a.ID, "err", err)
	}
}

// Sentence words a run's error as the one sentence the record keeps.
func (b *Bot) Sentence(res Result) string { return UserMessage(b.word(res)) }

// Started posts dep's status message and starts updating it.
func (b *Bot) Started(ctx context.Context, dep nixdeploy.Deployment, channel, approvedBy string) runs.Progress {
	if channel == "" {
		channel = b.Config().Slack.Channel
	}
	st := newStreamer(b, dep, channel, approvedBy)
	if dep.Resumed && dep.MessageTS != "" && dep.Channel == channel {
		// Reattached after a restart: the deployment's message carries on.
		st.resume(dep.MessageTS)
	} else {
		st.post(ctx)
	}
	p := &progress{Streamer: st, done: make(chan struct{}), updaterDone: make(chan struct{})}
	posted := b.clock.Now()
	go func() {
		defer close(p.updaterDone)
		st.updates(ctx, posted, p.done)
	}()
	return p
}

// progress is a running deployment's status message.
type progress struct {
	*Streamer
	done        chan struct{}
	updaterDone chan struct{}
}

// Finished shows the end of the deployment in its status message and
// uploads the log.
func (p *progress) Finished(ctx context.Context, dep nixdeploy.Deployment, res Result, cancelledBy string) {
	close(p.done)
	<-p.updaterDone
	b := p.b
	if res.Err != nil {
		res.Err = b.word(res)
	}
	b.observe(dep, res.State, b.clock.Now().Sub(p.started))
	p.finish(ctx, res, cancelledBy)
}
