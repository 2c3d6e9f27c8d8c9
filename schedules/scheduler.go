// Package schedules runs the fleet's cron schedules, such as the nightly
// rolling rebuild of the RK1 nodes. It owns when a schedule fires (cron specs
// in a time zone, with a DST rule of its own, see Spec), what a run does
// (rolling: one host at a time, halting at the first failure; parallel: at
// most N at a time), the rules around runs (no overlap, missed runs skipped
// or caught up, pause/resume persisted), and the one summary each run posts.
//
// The timer is a small loop over Spec.Next on an injectable Clock rather
// than robfig/cron's own runner: the runner reads the real clock, and its
// Next gets DST wrong. robfig/cron still parses the specs.
package schedules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Deployer runs one action on one host. The bot wires the real deployer in.
type Deployer interface {
	// DeployHost blocks until the deployment ends and returns its id and
	// outcome. An error (returned, or in Result.Err) wrapping
	// nixdeploy.ErrHostBusy or nixdeploy.ErrLocked means the host is taken by a
	// manual deploy or lock: the scheduler tries again with backoff on its
	// clock, up to the schedule's BusyWait, then skips the host.
	DeployHost(ctx context.Context, req HostRequest) (Result, error)
}

// HostRequest and Result are root vocabulary (the bot answers them).
type (
	HostRequest = nixdeploy.HostRequest
	Result      = nixdeploy.HostResult
)

// Store is the part of *db.DB the scheduler uses.
type Store interface {
	Schedule(ctx context.Context, name string) (nixdeploy.ScheduleState, error)
	SetPaused(ctx context.Context, name string, paused bool, by string) error
	StartScheduleRun(ctx context.Context, r *nixdeploy.ScheduleRun) error
	RecordRunHost(ctx context.Context, runID int64, h nixdeploy.ScheduleRunHost) error
	FinishScheduleRun(ctx context.Context, runID int64, outcome nixdeploy.Outcome, detail string) error
	ScheduleRuns(ctx context.Context, schedule string, limit int) ([]nixdeploy.ScheduleRun, error)
	Audit(ctx context.Context, e nixdeploy.AuditEvent) error
}

// Notifier posts a run's summary, for example to the fleet's Slack channel.
type Notifier interface {
	Summary(ctx context.Context, s Summary) error
}

// WaitNotifier is a Notifier that is also told when a run starts waiting
// for a busy or locked host, so the channel knows why the run stands still.
// It is optional: the scheduler checks for it.
type WaitNotifier interface {
	Waiting(ctx context.Context, w Wait) error
}

// Wait is a run waiting for a host that is busy or locked.
type Wait struct {
	Schedule string
	RunID    int64
	Host     string
	// Until is when the run gives up on the host (busy_wait).
	Until time.Time
	// Reason is why the host is not free, as the deployer said it.
	Reason string
}

// Text is the one-line notice for the channel.
func (w Wait) Text() string {
	return fmt.Sprintf(":hourglass: %s is waiting for %s until %s, then skips it: %s",
		w.Schedule, w.Host, w.Until.UTC().Format("15:04 UTC"), w.Reason)
}

// Triggers, as stored in schedule_runs.trigger.
const (
	TriggerCron    = "cron"
	TriggerManual  = "manual"
	TriggerCatchUp = "catch-up"
)

// Outcomes of runs and of hosts within a run (nixdeploy.Outcome).
const (
	OutcomeRunning     = nixdeploy.OutcomeRunning
	OutcomeSucceeded   = nixdeploy.OutcomeSucceeded
	OutcomeFailed      = nixdeploy.OutcomeFailed
	OutcomeSkipped     = nixdeploy.OutcomeSkipped
	OutcomeInterrupted = nixdeploy.OutcomeInterrupted
	// OutcomeUntouched is a host a halted run never started.
	OutcomeUntouched = nixdeploy.OutcomeUntouched
)

// Errors returned by the control API; test them with errors.Is.
var (
	ErrUnknownSchedule = fmt.Errorf("unknown schedule: %w", nixdeploy.ErrNotFound)
	ErrRunning         = errors.New("is already running")
	ErrStopped         = errors.New("scheduler is stopped")
)

const (
	// lateGrace is how late a tick may be handled and still count as on
	// time; later than that (the process was suspended, or the clock
	// stepped) it is a missed run and the schedule's Missed policy applies.
	lateGrace = time.Minute
	// maxSleep caps each wait so a wall-clock step or a suspended VM is
	// noticed within a minute: timers run on the monotonic clock.
	maxSleep = time.Minute
	// recentRuns is how far back Start looks for the last tick and for
	// runs a previous process left "running".
	recentRuns = 50
	// maxMissedLookback bounds the missed-tick count after a long outage.
	maxMissedLookback = 31 * 24 * time.Hour
	// finishTimeout bounds recording and posting a run's end, which must
	// happen even when the run itself was cancelled by Stop.
	finishTimeout = 30 * time.Second
)

// Options configures a Scheduler. Config, Store and Deployer are required.
type Options struct {
	Config   *nixdeploy.Config
	Store    Store
	Deployer Deployer
	// Notifier is optional; without it summaries are only logged.
	Notifier Notifier
	// Reporter reads and posts the drift board; required when a schedule
	// has action = "report".
	Reporter Reporter
	// Clock defaults to the real clock.
	Clock Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Scheduler fires the configured schedules and runs them.
type Scheduler struct {
	store    Store
	deployer Deployer
	notifier Notifier
	reporter Reporter
	clock    Clock
	log      *slog.Logger
	onCall   []string
	entries  []*entry

	// ctx is the context runs execute in; Stop cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	running map[string]int64 // schedule → id of its run in flight (0 while being created)
	started bool
	loop    chan struct{} // closed when the timer loop ends; nil before Start
	runs    sync.WaitGroup
}

type entry struct {
	cfg   nixdeploy.Schedule
	spec  *Spec
	hosts []string
}

// New checks the configured schedules and returns a Scheduler that has not
// started its timers yet; RunNow, Pause and List work before Start.
func New(o Options) (*Scheduler, error) {
	if o.Config == nil || o.Store == nil || o.Deployer == nil {
		return nil, errors.New("schedules: Config, Store and Deployer are required")
	}
	s := &Scheduler{
		store:    o.Store,
		deployer: o.Deployer,
		notifier: o.Notifier,
		reporter: o.Reporter,
		clock:    o.Clock,
		log:      o.Logger,
		onCall:   slices.Clone(o.Config.Slack.OnCall),
		running:  map[string]int64{},
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var problems []string
	for _, sc := range o.Config.Schedules {
		e, err := newEntry(o.Config, sc)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if sc.Action == nixdeploy.ScheduleReport && o.Reporter == nil {
			problems = append(problems, fmt.Sprintf("schedule %s: action report needs a reporter", sc.Name))
			continue
		}
		s.entries = append(s.entries, e)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", nixdeploy.ErrInvalidInput, strings.Join(problems, "; "))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func newEntry(c *nixdeploy.Config, sc nixdeploy.Schedule) (*entry, error) {
	spec, err := ParseSpec(sc.Cron, sc.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", sc.Name, err)
	}
	hosts, err := c.Select(sc.Hosts)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", sc.Name, err)
	}
	if _, err := nixdeploy.ParseAction(string(sc.Action)); err != nil && sc.Action != nixdeploy.ScheduleReport {
		return nil, fmt.Errorf("schedule %s: %w", sc.Name, err)
	}
	// Config validation refuses this too; a scheduler must never wipe a
	// disk unattended even if handed an unvalidated config.
	if sc.Action.Destructive() {
		return nil, fmt.Errorf("schedule %s: action %s is destructive and cannot be scheduled", sc.Name, sc.Action)
	}
	if sc.Strategy == "" {
		sc.Strategy = nixdeploy.DefaultStrategy
	}
	if _, ok := strategies[sc.Strategy]; !ok {
		return nil, fmt.Errorf("schedule %s: strategy %q must be one of %v", sc.Name, sc.Strategy, nixdeploy.Strategies)
	}
	sc.Parallel = max(sc.Parallel, 1)
	if sc.Missed == "" {
		sc.Missed = "skip"
	}
	e := &entry{cfg: sc, spec: spec}
	for _, h := range hosts {
		e.hosts = append(e.hosts, h.Name)
	}
	return e, nil
}

func (s *Scheduler) entry(name string) (*entry, error) {
	for _, e := range s.entries {
		if e.cfg.Name == name {
			return e, nil
		}
	}
	names := make([]string, len(s.entries))
	for i, e := range s.entries {
		names[i] = e.cfg.Name
	}
	return nil, fmt.Errorf("%w %q (schedules: %s)", ErrUnknownSchedule, name, strings.Join(names, ", "))
}

// Start deals with what happened while nixdeploy was down, then arms the
// timers. Runs a previous process left "running" are marked interrupted;
// ticks missed since a schedule's last recorded tick are skipped (recorded)
// or, with missed = "catch-up", run once if the latest is within the
// window. Cancelling ctx stops the scheduler like Stop.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.ctx.Err() != nil:
		s.mu.Unlock()
		return ErrStopped
	case s.started:
		s.mu.Unlock()
		return errors.New("scheduler already started")
	}
	s.started = true
	s.mu.Unlock()

	now := s.clock.Now()
	for _, e := range s.entries {
		if err := s.recover(ctx, e, now); err != nil {
			return err
		}
	}
	context.AfterFunc(ctx, s.cancel)
	done := make(chan struct{})
	s.mu.Lock()
	s.loop = done
	s.mu.Unlock()
	go s.timerLoop(s.ctx, now, done)
	s.log.Info("schedules started", "schedules", len(s.entries))
	return nil
}

// Stop stops the timers, cancels runs in flight (they record themselves as
// interrupted) and waits for them to finish.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	s.cancel()
	loop := s.loop
	s.mu.Unlock()
	if loop != nil {
		<-loop
	}
	s.runs.Wait()
}

// Wait blocks until no run is in flight. Tests use it after the clock made
// a schedule fire.
func (s *Scheduler) Wait() { s.runs.Wait() }

// recover handles one schedule's state left by a previous process.
func (s *Scheduler) recover(ctx context.Context, e *entry, now time.Time) error {
	name := e.cfg.Name
	runs, err := s.store.ScheduleRuns(ctx, name, recentRuns)
	if err != nil {
		return fmt.Errorf("recover schedule %s: %w", name, err)
	}
	var last time.Time
	for _, r := range runs {
		if r.Outcome == OutcomeRunning && r.ID != s.runningID(name) {
			// Not ours (a RunNow before Start would be): no process
			// executes it any more.
			if err := s.store.FinishScheduleRun(ctx, r.ID, OutcomeInterrupted, "nixdeploy restarted while this run was in flight"); err != nil {
				return fmt.Errorf("recover schedule %s: %w", name, err)
			}
			s.log.Warn("schedule run interrupted by restart", "schedule", name, "run", r.ID)
		}
		// Manual runs say nothing about whether a tick was handled.
		if r.Trigger != TriggerManual && r.ScheduledAt.After(last) {
			last = r.ScheduledAt
		}
	}
	st, err := s.store.Schedule(ctx, name)
	if err != nil {
		return fmt.Errorf("recover schedule %s: %w", name, err)
	}
	if st.Paused {
		return nil
	}
	// Ticks before the latest resume fell while paused: not missed.
	if st.ChangedAt.After(last) {
		last = st.ChangedAt
	}
	if last.IsZero() {
		// Never ran here: there is no "while we were down" to speak of.
		return nil
	}
	at, n := lastDue(e.spec, last, now)
	if n == 0 {
		return nil
	}
	s.missed(ctx, e, at, now, n)
	return nil
}

// lastDue returns the latest tick in (from, now] and how many there were.
func lastDue(spec *Spec, from, now time.Time) (time.Time, int) {
	from = maxTime(from, now.Add(-maxMissedLookback))
	var at time.Time
	n := 0
	for t := spec.Next(from); !t.IsZero() && !t.After(now); t = spec.Next(t) {
		at, n = t, n+1
	}
	return at, n
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// timerLoop fires ticks. One goroutine serves every schedule, so ticks due
// together are handled in config order.
func (s *Scheduler) timerLoop(ctx context.Context, now time.Time, done chan struct{}) {
	defer close(done)
	next := make([]time.Time, len(s.entries))
	for i, e := range s.entries {
		next[i] = e.spec.Next(now)
	}
	for {
		now = s.clock.Now()
		wait := maxSleep
		for _, t := range next {
			if !t.IsZero() {
				wait = min(wait, t.Sub(now))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(max(wait, 0)):
		}
		now = s.clock.Now()
		for i, e := range s.entries {
			if next[i].IsZero() || now.Before(next[i]) {
				continue
			}
			// After a long sleep several ticks may be due: only the
			// latest is acted on, the rest are counted as missed.
			at, n := lastDue(e.spec, next[i].Add(-time.Nanosecond), now)
			s.tick(ctx, e, at, now, n)
			next[i] = e.spec.Next(now)
		}
	}
}

// tick handles a schedule's tick at at, observed at now; n > 1 ticks were
// due at once.
func (s *Scheduler) tick(ctx context.Context, e *entry, at, now time.Time, n int) {
	log := s.log.With("schedule", e.cfg.Name, "scheduled", at)
	st, err := s.store.Schedule(ctx, e.cfg.Name)
	if err != nil {
		// Not knowing whether it is paused, don't run it.
		log.Error("schedule tick: read pause state", "err", err)
		return
	}
	if st.Paused {
		log.Info("schedule paused, not firing", "paused_by", st.PausedBy)
		return
	}
	if n > 1 || now.Sub(at) > lateGrace {
		s.missed(ctx, e, at, now, n)
		return
	}
	s.fire(ctx, e, TriggerCron, at, "")
}

// fire starts a run for a tick, or records the tick as skipped when the
// previous run of the schedule is still going.
func (s *Scheduler) fire(ctx context.Context, e *entry, trigger string, at time.Time, note string) {
	_, err := s.launch(ctx, e, trigger, at, "")
	switch {
	case err == nil:
	case errors.Is(err, ErrRunning):
		detail := fmt.Sprintf("the previous run #%d was still going", s.runningID(e.cfg.Name))
		if note != "" {
			detail = note + "; " + detail
		}
		s.skip(ctx, e, trigger, at, detail)
	default:
		s.log.Error("schedule run failed to start", "schedule", e.cfg.Name, "scheduled", at, "err", err)
	}
}

// missed applies the schedule's Missed policy to the latest of n ticks that
// were not handled on time.
func (s *Scheduler) missed(ctx context.Context, e *entry, at, now time.Time, n int) {
	detail := "nixdeploy was down at " + at.In(e.spec.Location()).Format(timeLayout)
	if n > 1 {
		detail = fmt.Sprintf("missed %d runs while nixdeploy was down, the latest at %s", n, at.In(e.spec.Location()).Format(timeLayout))
	}
	if e.cfg.Missed == "catch-up" {
		window := e.cfg.CatchUpWindow.Duration
		if now.Sub(at) <= window {
			s.log.Info("catching up a missed run", "schedule", e.cfg.Name, "scheduled", at, "missed", n)
			s.fire(ctx, e, TriggerCatchUp, at, detail)
			return
		}
		detail += fmt.Sprintf("; too late to catch up (window %s)", window)
	}
	s.skip(ctx, e, TriggerCron, at, detail)
}

// skip records a tick that did not run, and says so in the channel.
func (s *Scheduler) skip(ctx context.Context, e *entry, trigger string, at time.Time, detail string) {
	now := s.clock.Now()
	r := nixdeploy.ScheduleRun{
		Schedule:    e.cfg.Name,
		Trigger:     trigger,
		ScheduledAt: at,
		StartedAt:   now,
		EndedAt:     now,
		Outcome:     OutcomeSkipped,
		Detail:      detail,
	}
	s.log.Warn("schedule run skipped", "schedule", e.cfg.Name, "scheduled", at, "reason", detail)
	if err := s.store.StartScheduleRun(ctx, &r); err != nil {
		s.log.Error("record skipped run", "schedule", e.cfg.Name, "err", err)
	}
	s.notify(ctx, Summary{
		Schedule:    e.cfg.Name,
		RunID:       r.ID,
		Trigger:     trigger,
		Action:      e.cfg.Action,
		ScheduledAt: at.In(e.spec.Location()),
		StartedAt:   now,
		EndedAt:     now,
		Outcome:     OutcomeSkipped,
		Detail:      detail,
	})
}

func (s *Scheduler) runningID(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[name]
}

// launch records a new run and executes it in the background. It refuses a
// schedule whose previous run is still going.
func (s *Scheduler) launch(ctx context.Context, e *entry, trigger string, at time.Time, by string) (int64, error) {
	name := e.cfg.Name
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return 0, ErrStopped
	}
	if id, ok := s.running[name]; ok {
		s.mu.Unlock()
		return 0, fmt.Errorf("schedule %s %w (run #%d)", name, ErrRunning, id)
	}
	// Claim the slot before touching the store so a concurrent tick or
	// RunNow cannot start a second run meanwhile.
	s.running[name] = 0
	s.runs.Add(1)
	s.mu.Unlock()

	r := nixdeploy.ScheduleRun{
		Schedule:    name,
		Trigger:     trigger,
		ScheduledAt: at,
		StartedAt:   s.clock.Now(),
		Outcome:     OutcomeRunning,
	}
	if err := s.store.StartScheduleRun(ctx, &r); err != nil {
		s.release(name)
		s.runs.Done()
		return 0, fmt.Errorf("start run of schedule %s: %w", name, err)
	}
	s.mu.Lock()
	s.running[name] = r.ID
	s.mu.Unlock()
	s.log.Info("schedule run started", "schedule", name, "run", r.ID, "trigger", trigger, "by", by, "hosts", e.hosts)
	go s.execute(e, r, by)
	return r.ID, nil
}

func (s *Scheduler) release(name string) {
	s.mu.Lock()
	delete(s.running, name)
	s.mu.Unlock()
}

// Status is one schedule as List reports it (root vocabulary: the bot
// shows it).
type Status = nixdeploy.ScheduleStatus

// List returns every configured schedule, in config order.
func (s *Scheduler) List(ctx context.Context) ([]Status, error) {
	now := s.clock.Now()
	out := make([]Status, 0, len(s.entries))
	for _, e := range s.entries {
		st, err := s.store.Schedule(ctx, e.cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		runs, err := s.store.ScheduleRuns(ctx, e.cfg.Name, 1)
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		v := Status{
			Name:      e.cfg.Name,
			Spec:      e.cfg.Cron,
			TimeZone:  e.spec.Location().String(),
			Hosts:     slices.Clone(e.hosts),
			Action:    e.cfg.Action,
			Strategy:  e.cfg.Strategy,
			Paused:    st.Paused,
			PausedBy:  st.PausedBy,
			ChangedAt: st.ChangedAt,
			RunningID: s.runningID(e.cfg.Name),
		}
		if !st.Paused {
			v.Next = e.spec.Next(now)
		}
		if len(runs) > 0 {
			v.Last = &runs[0]
		}
		out = append(out, v)
	}
	return out, nil
}

// Pause stops a schedule from firing until Resume, across restarts. A run
// already in flight is not affected; RunNow still works.
func (s *Scheduler) Pause(ctx context.Context, name, by string) error {
	return s.setPaused(ctx, name, true, by)
}

// Resume lets a paused schedule fire again from its next tick; ticks that
// fell while it was paused are not missed runs.
func (s *Scheduler) Resume(ctx context.Context, name, by string) error {
	return s.setPaused(ctx, name, false, by)
}

func (s *Scheduler) setPaused(ctx context.Context, name string, paused bool, by string) error {
	if _, err := s.entry(name); err != nil {
		return err
	}
	if err := s.store.SetPaused(ctx, name, paused, by); err != nil {
		return err
	}
	kind := "schedule.resume"
	if paused {
		kind = "schedule.pause"
	}
	s.audit(ctx, by, kind, name)
	s.log.Info(kind, "schedule", name, "by", by)
	return nil
}

// RunNow starts a run of the schedule now, with the same hosts, strategy
// and halting rules as a cron run, and returns its id without waiting for
// it. It is refused with ErrRunning while the schedule has a run in flight.
// A paused schedule can still be run by hand.
func (s *Scheduler) RunNow(ctx context.Context, name, by string) (int64, error) {
	e, err := s.entry(name)
	if err != nil {
		return 0, err
	}
	id, err := s.launch(ctx, e, TriggerManual, s.clock.Now(), by)
	if err != nil {
		return 0, err
	}
	s.audit(ctx, by, "schedule.run", fmt.Sprintf("%s run #%d", name, id))
	return id, nil
}

// audit records a control action. Losing an audit row must not undo the
// action that already happened, so a failure is only logged.
func (s *Scheduler) audit(ctx context.Context, by, kind, detail string) {
	if err := s.store.Audit(ctx, nixdeploy.AuditEvent{Time: s.clock.Now(), Actor: by, Kind: kind, Detail: detail}); err != nil {
		s.log.Error("audit", "kind", kind, "err", err)
	}
}
