package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/runs"
)

// reattachLeft picks up, one after the other, every deployment a process
// that died (or shut down) left with a step running on the runner
// (issue 14): it becomes their owner, follows each step from the stored
// log offset through the rest of its plan, and records the end. w gets one
// line before and after each; sink(dep) the deployment's log lines.
//
// This is the terminal's start-up path (`deploy`); serve's is
// runs.Lifecycle's Recover, which carries on each status message.
func reattachLeft(ctx context.Context, store *db.DB, d *deployer.Deployer, w io.Writer, sink func(nixdeploy.Deployment) deployer.Sink) {
	deps, err := store.Reattachable(ctx)
	if err != nil {
		fmt.Fprintf(w, "nixdeploy: cannot look for deployments left running: %v\n", err)
		return
	}
	life := runs.New(store, d)
	for _, dep := range deps {
		if err := store.Adopt(ctx, dep.ID); err != nil {
			continue // another process took it first
		}
		fmt.Fprintf(w, "nixdeploy: reattaching deployment %d (%s %s), whose step was left running on the runner\n",
			dep.ID, dep.Action, strings.Join(dep.Hosts, ", "))
		var sinks []deployer.Sink
		if s := sink(dep); s != nil {
			sinks = append(sinks, s)
		}
		rep, err := d.Reattach(ctx, &dep, sinks...)
		state, code, text := dep.State, dep.ExitCode, dep.Error
		switch {
		case rep != nil:
		case errors.Is(err, deployer.ErrRemoteUnknown):
			state, code, text = nixdeploy.StateInterrupted, 1, "nixdeploy restarted while this deployment was in flight, and "+err.Error()
		default:
			state, code, text = nixdeploy.StateInterrupted, 1, "nixdeploy restarted while this deployment was in flight"
			if !errors.Is(err, deployer.ErrNothingToReattach) {
				text += " and could not reattach: " + err.Error()
			}
		}
		if err := life.Finish(context.WithoutCancel(ctx), dep.ID, state, code, text); err != nil {
			fmt.Fprintf(w, "nixdeploy: record the end of deployment %d: %v\n", dep.ID, err)
			continue
		}
		summary := string(state)
		if rep != nil {
			summary = rep.Summary()
		} else if text != "" {
			summary += ": " + text
		}
		fmt.Fprintf(w, "nixdeploy: deployment %d (reattached): %s\n", dep.ID, summary)
	}
}
