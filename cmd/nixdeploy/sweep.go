package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nixdeploy/nixdeploy/deployer"
)

// sweepEvery is how often serve sweeps the runner after the sweep at start.
const sweepEvery = 24 * time.Hour

// sweep removes the runner's stale run directories once and reports each
// (deployer.Sweep): a logged warning when it still held key material,
// which only a crash before the step's supervisor ran leaves behind.
func sweep(ctx context.Context, d *deployer.Deployer, logger *slog.Logger, w io.Writer) {
	swept, err := d.Sweep(ctx)
	if err != nil {
		logger.Warn("sweep of the runner's run directories failed", "err", err)
		return
	}
	for _, s := range swept {
		if s.Keys {
			logger.Warn("removed a stale run directory that still held key material", "dir", s.Dir)
		} else {
			logger.Info("removed a stale run directory", "dir", s.Dir)
		}
		if w != nil {
			held := "no key material"
			if s.Keys {
				held = "key material (host, initrd or disk key)"
			}
			fmt.Fprintf(w, "nixdeploy: removed the stale run directory %s on the runner; it held %s\n", s.Dir, held)
		}
	}
}

// sweepDaily sweeps at start and then every sweepEvery until ctx ends.
func sweepDaily(ctx context.Context, d *deployer.Deployer, logger *slog.Logger) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		sweep(ctx, d, logger, nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startRecovery is serve's daily sweep of stale run directories (issue
// 14); the deployments a dead or shut-down process left running on the
// runner are reattached by the lifecycle's Recover at the bot's start, so
// their status messages carry on. d is nil when the deployer is
// unavailable.
func startRecovery(ctx context.Context, d *deployer.Deployer, logger *slog.Logger) {
	if d == nil {
		return
	}
	go sweepDaily(ctx, d, logger)
}
