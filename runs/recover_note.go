package runs

import (
	"context"

	"github.com/nixdeploy/nixdeploy"
)

// stepReader is what a Store may offer to read a deployment's recorded
// steps (*db.DB does).
type stepReader interface {
	Steps(ctx context.Context, deploymentID int64) ([]nixdeploy.StepResult, error)
}

// recoveryNote is nixdeploy.RecoveredNote when the deployer recovered a
// host of deployment id by a power reset (its recover step succeeded),
// for the schedule's summary; "" otherwise.
func (l *Lifecycle) recoveryNote(ctx context.Context, id int64) string {
	sr, ok := l.store.(stepReader)
	if !ok {
		return ""
	}
	steps, err := sr.Steps(context.WithoutCancel(ctx), id)
	if err != nil {
		l.log.Warn("read steps for the summary", "deployment", id, "err", err)
		return ""
	}
	for _, s := range steps {
		if s.Name == nixdeploy.StepRecover && s.ExitCode == 0 {
			return nixdeploy.RecoveredNote
		}
	}
	return ""
}
