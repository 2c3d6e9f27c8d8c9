package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/runs"
)

// reattachLeft has the lifecycle pick up, one after the other, every
// deployment a process that died (or shut down) left with a step running
// on the runner (issue 14; runs.ReattachLeft adopts, follows and records
// each), and prints one line before and after each to w; sink(dep) gets
// the deployment's log lines. This is the terminal's start (`deploy`);
// serve's is the lifecycle's Recover, which carries on each status
// message.
func reattachLeft(ctx context.Context, life *runs.Lifecycle, w io.Writer, sink func(nixdeploy.Deployment) deployer.Sink) {
	done, err := life.ReattachLeft(ctx, func(dep nixdeploy.Deployment) nixdeploy.Sink {
		fmt.Fprintf(w, "nixdeploy: reattaching deployment %d (%s %s), whose step was left running on the runner\n",
			dep.ID, dep.Action, strings.Join(dep.Hosts, ", "))
		return sink(dep)
	})
	if err != nil {
		fmt.Fprintf(w, "nixdeploy: cannot look for deployments left running: %v\n", err)
	}
	for _, r := range done {
		summary := string(r.Deployment.State)
		if r.Report != nil {
			summary = r.Report.Summary()
		} else if r.Deployment.Error != "" {
			summary += ": " + r.Deployment.Error
		}
		fmt.Fprintf(w, "nixdeploy: deployment %d (reattached): %s\n", r.Deployment.ID, summary)
	}
}
