package bot

import (
	"context"
	"fmt"
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
	// The lifecycle refuses new deployments from now on (a command or a
	// reaction still being worked on is told so), lets those in flight
	// finish within ctx and interrupts the rest.
	stopped := b.life.Shutdown(ctx)
	b.cancel(nixdeploy.ErrShutdown)
	b.work.Wait(context.Background())
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
