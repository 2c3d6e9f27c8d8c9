package deployer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// ErrNothingToReattach: the deployment has no supervised step recorded as
// running, so there is nothing on the runner to pick up; the caller marks
// it interrupted as before.
var ErrNothingToReattach = errors.New("no step of this deployment is recorded as running on the runner")

// resumePoint is where a reattached deployment picks up: host index host
// of its plans, at the supervised step rs, with its lines numbered from
// seq+1.
type resumePoint struct {
	host int
	rs   *nixdeploy.RemoteStep
	seq  int64
}

// Reattach picks up a deployment a process that died (or shut down) left
// with a supervised step running on the runner. The caller has made this
// process its owner (db's Adopt) and gives the sinks that carry on its
// status message. The step is followed from the stored byte offsets, so
// the log is stored once: if it still runs, to its end; if it ended while
// no bot watched, its status file and the rest of its log are read. Then
// the rest of the plan runs (cleanup, wait, verify, later hosts), exactly
// as Run would have, and the outcome is on dep and in the report as Run
// leaves it. When the end cannot be learned (the runner stays unreachable
// for the outage limit, the supervisor vanished without a status, the
// runner in the config is another one) the deployment ends interrupted and
// the error says what is unknown.
//
// A deployment with no step recorded as running is ErrNothingToReattach
// and nothing is done.
func (d *Deployer) Reattach(ctx context.Context, dep *nixdeploy.Deployment, sinks ...Sink) (*Report, error) {
	if dep.ID == 0 {
		return nil, errors.New("reattach a deployment that is not stored")
	}
	rstore := d.remoteStore()
	if rstore == nil {
		return nil, fmt.Errorf("%w: the store records no remote steps", ErrNothingToReattach)
	}
	running, err := rstore.RemoteSteps(ctx, dep.ID, nixdeploy.RemoteRunning)
	if err != nil {
		return nil, err
	}
	if len(running) == 0 {
		return nil, ErrNothingToReattach
	}
	// One step runs at a time; an older row left running is stale.
	rs := running[len(running)-1]
	for _, old := range running[:len(running)-1] {
		if err := rstore.EndRemoteStep(ctx, old.ID, nixdeploy.RemoteUnknown, -1); err != nil {
			return nil, err
		}
	}
	unknown := func(why string) (*Report, error) {
		if err := rstore.EndRemoteStep(ctx, rs.ID, nixdeploy.RemoteUnknown, -1); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s of %s on the runner: %s", ErrRemoteUnknown, rs.Step, rs.Host, why)
	}
	if rs.Runner != d.runnerName() {
		return unknown(fmt.Sprintf("it ran on runner %s, and the config now names %s", rs.Runner, d.runnerName()))
	}
	plans, err := d.plans(dep)
	if err != nil {
		return unknown(fmt.Sprintf("the deployment cannot be planned any more (%v)", err))
	}
	hi := -1
	for i, p := range plans {
		if p.Host.Name == rs.Host && stepIndex(p, rs.Step) >= 0 {
			hi = i
		}
	}
	if hi < 0 {
		return unknown("its plan has no such step any more")
	}
	seq, err := rstore.LastLogSeq(ctx, dep.ID)
	if err != nil {
		return nil, err
	}
	d.log.Info("reattaching", "deployment", dep.ID, "host", rs.Host, "step", rs.Step, "dir", rs.Dir, "pgid", rs.PGID)
	return d.execute(ctx, dep, plans, sinks, &resumePoint{host: hi, rs: &rs, seq: seq})
}

func stepIndex(p *Plan, name string) int {
	for i, st := range p.Steps {
		if st.Name == name && supervised(st) {
			return i
		}
	}
	return -1
}

// resumeAt prepares h to pick up at resume and returns the index of its
// step (0 without one).
func (h *hostRun) resumeAt(resume *nixdeploy.RemoteStep) int {
	if resume == nil {
		return 0
	}
	h.resume = resume
	h.tmp = resume.Dir
	if resume.Lock != nil {
		l := *resume.Lock
		h.locked = &l
	}
	h.before = resume.Before
	return max(0, stepIndex(h.plan, resume.Step))
}

// remaining is what is left of the reattached step's timeout, which the
// supervisor's timeout(1) enforces on the runner, plus the time to learn
// its status.
func (h *hostRun) remaining(rs *nixdeploy.RemoteStep) time.Duration {
	left := rs.StartedAt.Add(rs.Timeout).Sub(h.d.opts.Now())
	return max(left, 0) + h.d.opts.KillGrace + h.d.opts.ConnectTimeout + 10*time.Second
}
