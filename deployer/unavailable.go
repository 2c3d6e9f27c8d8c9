package deployer

import (
	"context"

	"github.com/nixdeploy/nixdeploy"
)

// Unavailable is the executor of a nixdeploy that cannot reach the fleet
// (no SSH key): the bot still starts, and every deployment fails with
// Err, which says how to fix it. A destructive request fails before its
// approval is asked: there is no plan to bind it to.
type Unavailable struct{ Err error }

// Run fails dep at its first host's connect step.
func (u Unavailable) Run(_ context.Context, dep *nixdeploy.Deployment, _ ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	return &nixdeploy.Report{DeploymentID: dep.ID, State: nixdeploy.StateFailed},
		&nixdeploy.StepError{Host: dep.Hosts[0], Step: "connect", ExitCode: 1, Err: u.Err}
}

// Fingerprint fails: without a connection there is no plan to approve.
func (u Unavailable) Fingerprint(nixdeploy.Deployment) (string, error) { return "", u.Err }
