package bot

import (
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Observer hears how deployments end, for metrics. DeploymentEnded is
// called once per deployment that reaches a final state through the bot:
// after a run (took is how long it ran), or without one, when it was
// rejected, expired, voided or refused (took is 0). It must not block.
type Observer interface {
	DeploymentEnded(dep nixdeploy.Deployment, state nixdeploy.State, took time.Duration)
}

func (b *Bot) observe(dep nixdeploy.Deployment, state nixdeploy.State, took time.Duration) {
	if b.observer != nil {
		b.observer.DeploymentEnded(dep, state, took)
	}
}

// ReadingObserver is an Observer that also hears every reading of hosts
// for the drift board (the metrics' drift gauges). It is optional: the bot
// checks for it. HostsRead must not block.
type ReadingObserver interface {
	HostsRead(readings []nixdeploy.HostReading)
}

func (b *Bot) observeReadings(rs []nixdeploy.HostReading) {
	if o, ok := b.observer.(ReadingObserver); ok {
		o.HostsRead(rs)
	}
}
