package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
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
	if err := b.checkFree(ctx, req.Requester, req.Hosts); err != nil {
		return nixdeploy.Deployment{}, err
	}
	source := req.Source
	if source == "" {
		source = nixdeploy.SourceSchedule
	}
	dep := nixdeploy.Deployment{
		Hosts: req.Hosts, Action: req.Action, Requester: req.Requester, Source: source,
		State: nixdeploy.StateQueued, CreatedAt: b.clock.Now().UTC(), Guard: req.Guard,
	}
	if err := b.life.CreateDeployment(ctx, &dep); err != nil {
		return dep, fmt.Errorf("deploy %s %v: %w", req.Action, req.Hosts, err)
	}
	b.audit(ctx, req.Requester, "requested", dep.ID, fmt.Sprintf("%s %s", req.Action, hostsText(req.Hosts)))
	r, err := b.claim(dep)
	if err != nil {
		b.finishUnstarted(ctx, dep, nixdeploy.StateCancelled, err)
		return dep, err
	}
	if err := b.begin(ctx, r); err != nil {
		return dep, err
	}
	done := make(chan struct{})
	if !b.spawn(func(context.Context) {
		defer close(done)
		b.execRun(ctx, r, b.Config().Slack.Channel, "")
	}) {
		b.release(dep.ID)
		err := userf(context.Canceled, "nixdeploy is shutting down")
		b.finishUnstarted(ctx, dep, nixdeploy.StateCancelled, err)
		return dep, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		r.cancel()
		<-done
	}
	return b.store.Deployment(context.WithoutCancel(ctx), dep.ID)
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
	dep, err := b.Deploy(context.WithoutCancel(ctx), nixdeploy.Request{Action: req.Action, Hosts: []string{req.Host}, Requester: by, Source: nixdeploy.SourceSchedule, Guard: req.Guard})
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
