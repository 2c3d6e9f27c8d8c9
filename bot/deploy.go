package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/runs"
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

// DeployHost runs one host of a scheduled run through Deploy and answers
// the scheduler (it is the scheduler's schedules.Deployer). A failure's
// Err is the sentence people saw, never a Go error chain.
func (b *Bot) DeployHost(ctx context.Context, req nixdeploy.HostRequest) (nixdeploy.HostResult, error) {
	by := "schedule:" + req.Schedule
	if req.By != "" {
		by = req.By
	}
	// The scheduler's context ends when it stops, at shutdown; the host's
	// deployment then gets the bot's grace period like any other, so it
	// runs without that cancel.
	dep, err := b.Deploy(context.WithoutCancel(ctx), nixdeploy.Request{Action: req.Action, Hosts: []string{req.Host}, Requester: by, Source: nixdeploy.SourceSchedule})
	if errors.Is(err, nixdeploy.ErrShutdown) {
		// Refused because the bot is shutting down: the scheduler is
		// being stopped too, and waiting for that makes it record the
		// host as interrupted rather than failed.
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	if err != nil {
		return nixdeploy.HostResult{DeploymentID: dep.ID}, err
	}
	res := nixdeploy.HostResult{DeploymentID: dep.ID, State: dep.State, Revision: dep.Revision}
	if dep.State != nixdeploy.StateSucceeded {
		why := dep.Error
		if why == "" {
			why = string(dep.State)
		}
		res.Err = errors.New(why)
	}
	return res, nil
}

// Announce posts a notice to the fleet channel, such as a schedule's run
// summary.
func (b *Bot) Announce(ctx context.Context, text string) error {
	_, err := b.chat.Post(ctx, b.Config().Slack.Channel, Message{Kind: KindNotice, Text: text})
	return err
}
