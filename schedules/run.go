package schedules

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Backoff between attempts on a busy host. It starts short because a
// manual deploy may be just finishing, and stays well under a typical
// BusyWait so the host is picked up soon after it frees.
const (
	busyBackoffMin = 15 * time.Second
	busyBackoffMax = 2 * time.Minute
)

// execute runs a recorded run to its end, records the outcome and posts the
// summary.
func (s *Scheduler) execute(e *entry, r nixdeploy.ScheduleRun, by string) {
	defer s.runs.Done()
	ctx := s.ctx
	if e.cfg.Action == nixdeploy.ScheduleReport {
		s.executeReport(e, r, by)
		return
	}
	hosts, why := strategies[e.cfg.Strategy](s, ctx, e, r, by)
	outcome, detail := verdict(hosts)
	if why != "" {
		detail = why
	}

	s.endRun(ctx, e, r, by, outcome, detail, hosts, true)
}

// endRun records run r's end (Stop may have cancelled ctx; the end must
// still be written), frees its schedule and, when post is set, posts its
// summary.
func (s *Scheduler) endRun(ctx context.Context, e *entry, r nixdeploy.ScheduleRun, by string, outcome nixdeploy.Outcome, detail string, hosts []HostSummary, post bool) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := s.store.FinishScheduleRun(fctx, r.ID, outcome, detail); err != nil {
		s.log.Error("record run end", "schedule", e.cfg.Name, "run", r.ID, "err", err)
	}
	s.release(e.cfg.Name)
	s.log.Info("schedule run ended", "schedule", e.cfg.Name, "run", r.ID, "outcome", outcome, "detail", detail)
	if !post {
		return
	}
	s.notify(fctx, Summary{
		Schedule:    e.cfg.Name,
		RunID:       r.ID,
		Trigger:     r.Trigger,
		By:          by,
		Action:      e.cfg.Action,
		ScheduledAt: r.ScheduledAt.In(e.spec.Location()),
		StartedAt:   r.StartedAt,
		EndedAt:     s.clock.Now(),
		Outcome:     outcome,
		Detail:      detail,
		Hosts:       hosts,
	})
}

func (s *Scheduler) notify(ctx context.Context, sum Summary) {
	if sum.Outcome == OutcomeFailed || sum.Outcome == OutcomeInterrupted {
		sum.OnCall = s.onCall
	}
	if s.notifier == nil {
		s.log.Info("schedule summary", "schedule", sum.Schedule, "run", sum.RunID, "text", sum.Text())
		return
	}
	if err := s.notifier.Summary(ctx, sum); err != nil {
		s.log.Error("post schedule summary", "schedule", sum.Schedule, "run", sum.RunID, "err", err)
	}
}

// verdict sums up a run from its hosts.
func verdict(hosts []HostSummary) (outcome nixdeploy.Outcome, detail string) {
	skipped := 0
	for _, h := range hosts {
		switch h.Outcome {
		case OutcomeFailed:
			return OutcomeFailed, "halted: " + h.Host + " failed"
		case OutcomeInterrupted:
			return OutcomeInterrupted, "interrupted at " + h.Host
		case OutcomeSkipped:
			skipped++
		}
	}
	if skipped > 0 {
		return OutcomeSucceeded, fmt.Sprintf("%d of %d hosts skipped", skipped, len(hosts))
	}
	return OutcomeSucceeded, ""
}

// strategy runs a run's hosts and returns one summary per host, in run
// order, and, when it has one, the run's outcome in a sentence for people
// (else verdict words it).
type strategy func(s *Scheduler, ctx context.Context, e *entry, r nixdeploy.ScheduleRun, by string) ([]HostSummary, string)

// strategies is every strategy by its config name: adding one is its
// function, its entry here and its name in nixdeploy.Strategies (which the
// config validation reads; a test checks the two agree).
var strategies = map[nixdeploy.Strategy]strategy{
	nixdeploy.StrategyRolling:  (*Scheduler).rolling,
	nixdeploy.StrategyParallel: (*Scheduler).parallel,
	nixdeploy.StrategyCanary:   (*Scheduler).canary,
}

// rolling runs the hosts in order, one at a time, and leaves every host
// after the first failure untouched.
func (s *Scheduler) rolling(ctx context.Context, e *entry, r nixdeploy.ScheduleRun, by string) ([]HostSummary, string) {
	return s.roll(ctx, e, r, by, e.hosts), ""
}

// canary deploys the canary (the schedule's canary, else the first host)
// alone first. Every scheduled deployment is guarded (deployHost), so the
// canary is activated with test, checked, and only then made the boot
// default; when anything of that fails, its guard rolls it back and no
// other host is touched. Once it passed, the rest roll as with rolling.
func (s *Scheduler) canary(ctx context.Context, e *entry, r nixdeploy.ScheduleRun, by string) ([]HostSummary, string) {
	canary := e.cfg.Canary
	if canary == "" {
		canary = e.hosts[0]
	}
	var rest []string
	for _, h := range e.hosts {
		if h != canary {
			rest = append(rest, h)
		}
	}
	first := s.roll(ctx, e, r, by, []string{canary})
	if first[0].Outcome == OutcomeSucceeded {
		return append(first, s.roll(ctx, e, r, by, rest)...), ""
	}
	why := "the canary " + canary + " " + string(first[0].Outcome)
	for _, h := range rest {
		u := untouched(h, why)
		s.record(r.ID, u)
		first = append(first, u)
	}
	switch len(rest) {
	case 0:
		return first, fmt.Sprintf("The canary %s %s; it was the only host.", canary, first[0].Outcome)
	case 1:
		return first, fmt.Sprintf("The canary %s %s, so the other host, %s, was not touched.", canary, first[0].Outcome, rest[0])
	}
	return first, fmt.Sprintf("The canary %s %s, so none of the other %d hosts was touched.", canary, first[0].Outcome, len(rest))
}

// roll runs hosts in order, one at a time, and leaves every host after
// the first failure untouched.
func (s *Scheduler) roll(ctx context.Context, e *entry, r nixdeploy.ScheduleRun, by string, hosts []string) []HostSummary {
	out := make([]HostSummary, len(hosts))
	stop := ""
	for i, host := range hosts {
		switch {
		case stop != "":
			out[i] = untouched(host, stop)
		case ctx.Err() != nil:
			out[i] = untouched(host, "the scheduler was stopping")
		default:
			out[i] = s.deployHost(ctx, e, r, host, by)
			if out[i].Outcome == OutcomeFailed || out[i].Outcome == OutcomeInterrupted {
				stop = "halted after " + host
			}
		}
		s.record(r.ID, out[i])
	}
	return out
}

// parallel runs up to e.cfg.Parallel hosts at a time, in order. After a
// failure it starts no further host, for the same reason rolling halts: a
// change that broke one node should not be pushed to the rest.
func (s *Scheduler) parallel(ctx context.Context, e *entry, r nixdeploy.ScheduleRun, by string) ([]HostSummary, string) {
	out := make([]HostSummary, len(e.hosts))
	slots := make(chan struct{}, e.cfg.Parallel)
	var (
		mu     sync.Mutex
		failed string
		wg     sync.WaitGroup
	)
	for i, host := range e.hosts {
		slots <- struct{}{}
		mu.Lock()
		stop := failed
		mu.Unlock()
		if stop != "" || ctx.Err() != nil {
			<-slots
			why := "halted after " + stop
			if stop == "" {
				why = "the scheduler was stopping"
			}
			out[i] = untouched(host, why)
			s.record(r.ID, out[i])
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			h := s.deployHost(ctx, e, r, host, by)
			s.record(r.ID, h)
			mu.Lock()
			out[i] = h
			if (h.Outcome == OutcomeFailed || h.Outcome == OutcomeInterrupted) && failed == "" {
				failed = host
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out, ""
}

func untouched(host, why string) HostSummary {
	return HostSummary{Host: host, Outcome: OutcomeUntouched, Detail: why}
}

func (s *Scheduler) record(runID int64, h HostSummary) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), finishTimeout)
	defer cancel()
	err := s.store.RecordRunHost(ctx, runID, nixdeploy.ScheduleRunHost{
		Host:         h.Host,
		Outcome:      h.Outcome,
		DeploymentID: h.DeploymentID,
		Duration:     h.Duration,
		Detail:       h.Detail,
	})
	if err != nil {
		s.log.Error("record run host", "run", runID, "host", h.Host, "err", err)
	}
}

// deployHost deploys one host, waiting on the clock while it is busy.
func (s *Scheduler) deployHost(ctx context.Context, e *entry, r nixdeploy.ScheduleRun, host, by string) HostSummary {
	log := s.log.With("schedule", e.cfg.Name, "run", r.ID, "host", host)
	// Every scheduled deployment is guarded: nobody watches a nightly run,
	// so a host that loses its network or sshd must bring itself back.
	req := HostRequest{Schedule: e.cfg.Name, RunID: r.ID, Host: host, Action: e.cfg.Action, Trigger: r.Trigger, By: by, Recover: e.cfg.Recover, Guard: true}
	first := s.clock.Now()
	deadline := first.Add(e.cfg.BusyWait.Duration)
	backoff := busyBackoffMin
	for {
		start := s.clock.Now()
		res, err := s.deployer.DeployHost(ctx, req)
		if err == nil {
			err = res.Err
		}
		if busy(err) {
			now := s.clock.Now()
			if !now.Before(deadline) {
				log.Warn("host still busy, skipping it", "waited", now.Sub(first), "err", err)
				return HostSummary{Host: host, Outcome: OutcomeSkipped, Busy: true,
					Detail: fmt.Sprintf("busy for %s: %v", roundDuration(now.Sub(first)), err)}
			}
			wait := min(backoff, deadline.Sub(now))
			log.Info("host busy, waiting", "wait", wait, "err", err)
			if backoff == busyBackoffMin {
				// Once per host, on the first refusal.
				s.notifyWaiting(ctx, Wait{Schedule: e.cfg.Name, RunID: r.ID, Host: host, Until: deadline, Reason: err.Error()})
			}
			select {
			case <-ctx.Done():
				return HostSummary{Host: host, Outcome: OutcomeInterrupted, Detail: "stopped while waiting for the host to be free"}
			case <-s.clock.After(wait):
			}
			backoff = min(2*backoff, busyBackoffMax)
			continue
		}
		h := HostSummary{Host: host, DeploymentID: res.DeploymentID, Link: res.Link, Duration: s.clock.Now().Sub(start), Revision: res.Revision}
		switch {
		case err == nil && res.State == nixdeploy.StateSucceeded:
			// A host that finished while the scheduler was stopping
			// (a graceful shutdown lets it) still succeeded.
			h.Outcome, h.Detail = OutcomeSucceeded, res.Note
		case ctx.Err() != nil:
			h.Outcome, h.Detail = OutcomeInterrupted, "the scheduler was stopping"
		case err != nil:
			h.Outcome, h.Detail = OutcomeFailed, err.Error()
		default:
			// A deployer that reports no error but no success either has
			// not shown the host is healthy: treat it as failed.
			h.Outcome, h.Detail = OutcomeFailed, "deployment ended "+stateOrUnknown(res.State)
		}
		log.Info("host done", "outcome", h.Outcome, "deployment", h.DeploymentID, "duration", h.Duration)
		return h
	}
}

// notifyWaiting tells the notifier, if it wants to know, that the run waits.
func (s *Scheduler) notifyWaiting(ctx context.Context, w Wait) {
	wn, ok := s.notifier.(WaitNotifier)
	if !ok {
		return
	}
	if err := wn.Waiting(ctx, w); err != nil {
		s.log.Warn("announce wait", "schedule", w.Schedule, "host", w.Host, "err", err)
	}
}

// busy reports whether err means the host is taken and worth waiting for.
func busy(err error) bool {
	return errors.Is(err, nixdeploy.ErrHostBusy) || errors.Is(err, nixdeploy.ErrLocked)
}

func stateOrUnknown(s nixdeploy.State) string {
	if s == "" {
		return "in an unknown state"
	}
	return string(s)
}
