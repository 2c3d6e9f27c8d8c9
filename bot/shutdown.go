package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// announceTimeout bounds the shutdown notice to the channel.
const announceTimeout = 30 * time.Second

// Shutdown is the graceful Close, for SIGTERM. The bot takes no new
// commands, reactions or scheduled hosts; deployments in flight may finish
// until ctx ends (the grace period). Those still running then are stopped
// with nixdeploy.ErrShutdown as the cause, so they are recorded and shown as
// interrupted, never cancelled or left running, and the channel is told
// which they were. Shutdown returns them once all background work has ended.
func (b *Bot) Shutdown(ctx context.Context) []nixdeploy.Deployment {
	b.stopIntake()
	if b.work.wait(ctx) == nil {
		b.cancel(nixdeploy.ErrShutdown)
		return nil
	}
	b.mu.Lock()
	var stopped []nixdeploy.Deployment
	for _, r := range b.runs {
		if !r.ended {
			stopped = append(stopped, r.dep)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(stopped, func(x, y nixdeploy.Deployment) int { return int(x.ID - y.ID) })
	b.log.Warn("shutdown grace period over: interrupting deployments", "deployments", len(stopped))
	b.cancel(nixdeploy.ErrShutdown)
	// Each run still records and posts its end, bounded by finishTimeout.
	b.work.wait(context.Background())
	if len(stopped) > 0 {
		actx, cancel := context.WithTimeout(context.Background(), announceTimeout)
		defer cancel()
		if err := b.Announce(actx, shutdownNotice(stopped)); err != nil {
			b.log.Error("announce interrupted deployments", "err", err)
		}
	}
	return stopped
}

func shutdownNotice(deps []nixdeploy.Deployment) string {
	parts := make([]string, len(deps))
	for i, d := range deps {
		parts[i] = fmt.Sprintf("#%d %s %s", d.ID, d.Action, hostsText(d.Hosts))
	}
	return fmt.Sprintf(":warning: nixdeploy is shutting down and interrupted %s before it finished; check the hosts with /nixdeploy status and run it again once nixdeploy is back.",
		strings.Join(parts, ", "))
}

func (b *Bot) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
