package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/ops"
	"github.com/nixdeploy/nixdeploy/keys"
	"github.com/nixdeploy/nixdeploy/runs"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// newLogger logs to w: as JSON when NIXDEPLOY_LOG_FORMAT=json, as text when
// it is text; unset, as text on a terminal and as JSON otherwise (a service
// manager or Fly's log shipper, which parse it).
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	json := false
	switch os.Getenv(envLogFormat) {
	case "json":
		json = true
	case "text":
	default:
		json = !isTerminal(w)
	}
	if json {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// botDeps are the parts the bot is wired to, shared by serve and console.
type botDeps struct {
	store       *db.DB
	interrupted []nixdeploy.Deployment
	deployer    bot.Deployer
	locks       bot.Locks
	keys        bot.KeyChecker
	schedules   *botSchedules
	cfg         *nixdeploy.Config
	log         *slog.Logger
	scheduler   *schedules.Scheduler
	// boards reaches the Turing Pi BMCs; nil without [[bmcs]] or
	// without their passwords (see bmcBot and bmcPower).
	boards *bmc.Fleet
}

// depsOptions say where the bot's parts come from.
type depsOptions struct {
	// dbPath is the database file; default $NIXDEPLOY_DB.
	dbPath string
	// sshKey is the --ssh-key file; empty: $NIXDEPLOY_SSH_KEY.
	sshKey string
	// clientKey, when set, is the bot's SSH identity and sshKey is unused
	// (the demo's in-memory key).
	clientKey ssh.Signer
	// tune adjusts the deployer's options (the demo's short waits).
	tune func(*deployer.Options)
}

// openBotDeps opens the database, the key store and the deployer. Without
// an SSH key the bot still starts, and every deployment fails with a
// sentence saying how to provide one.
func openBotDeps(ctx context.Context, cfg *nixdeploy.Config, o depsOptions, logger *slog.Logger) (*botDeps, error) {
	if o.dbPath == "" {
		o.dbPath = db.PathFromEnv()
	}
	store, interrupted, err := db.Open(ctx, o.dbPath)
	if err != nil {
		return nil, err
	}
	d := &botDeps{store: store, interrupted: interrupted, locks: store, schedules: &botSchedules{}, cfg: cfg, log: logger}
	ks, err := keys.OpenStore(cfg)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open key store: %w", err)
	}
	d.keys = botKeys{cfg: cfg, store: ks}
	d.boards = openBoards(cfg, logger)
	client := o.clientKey
	if client == nil {
		client, err = deployer.LoadClientKey(o.sshKey)
		if err != nil {
			logger.Warn("no usable SSH key: deployments will fail until one is configured", "reason", err.Error())
			d.deployer = unavailableDeployer{why: bot.UserError("nixdeploy has no SSH key to reach the fleet; set "+deployer.ClientKeyEnv+" or pass --ssh-key, then request it again", err)}
			return d, nil
		}
	}
	opts := deployer.Options{
		Config: cfg, Store: store, HostKeys: ks, ClientKey: client, Logger: logger, Outage: cfg.Timeouts.Outage.Duration,
		Preflight: func(ctx context.Context, host string) error {
			rep, err := keys.Check(ctx, cfg, ks, []string{host})
			if err != nil {
				return err
			}
			if f := rep.Failures(); len(f) > 0 {
				return bot.UserError("the key preflight failed: "+strings.Join(f, "; "), errors.New("key preflight failed"))
			}
			return nil
		},
	}
	if o.tune != nil {
		o.tune(&opts)
	}
	dep, err := deployer.New(opts)
	if err != nil {
		store.Close()
		return nil, err
	}
	d.deployer = dep
	return d, nil
}

// newScheduler creates the scheduler of the configured schedules, which
// deploys through the bot so that scheduled runs stream to the channel
// like requested ones. Its timers start only with Start.
func (d *botDeps) newScheduler(b *bot.Bot) error {
	if len(d.cfg.Schedules) == 0 {
		return nil
	}
	s, err := schedules.New(schedules.Options{
		Config: d.cfg, Store: d.store, Deployer: b, Notifier: scheduleNotifier{b}, Logger: d.log,
	})
	if err != nil {
		return err
	}
	d.schedules.s = s
	d.scheduler = s
	return nil
}

// startSchedules creates the scheduler and starts its timers. Only
// shutdown stops them, not ctx: a SIGTERM must not cancel a scheduled
// deployment that the grace period would let finish.
func (d *botDeps) startSchedules(ctx context.Context, b *bot.Bot) error {
	if err := d.newScheduler(b); err != nil || d.scheduler == nil {
		return err
	}
	return d.scheduler.Start(context.WithoutCancel(ctx))
}

// shutdown stops the bot gracefully: the schedules start no further host,
// deployments in flight get grace to finish, and the rest are interrupted
// (recorded, shown and announced as such).
func (d *botDeps) shutdown(b *bot.Bot, grace time.Duration) []nixdeploy.Deployment {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if d.scheduler != nil {
			d.scheduler.Stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	interrupted := b.Shutdown(ctx)
	<-stopped
	for _, dep := range interrupted {
		d.log.Warn("deployment interrupted by shutdown", "deployment", dep.ID, "action", dep.Action, "hosts", dep.Hosts)
	}
	return interrupted
}

func (d *botDeps) close() {
	if d.scheduler != nil {
		d.scheduler.Stop()
		d.scheduler.Wait()
	}
	d.store.Close()
}

// The deployer is the bot's Deployer, Resolver and Unlocker and the
// lifecycle's Executor as it is, with no adapter; the bot finds Resolver
// and Unlocker by type assertion, so these fail the build if a signature
// drifts rather than silently turning the features off.
var (
	_ bot.Deployer  = (*deployer.Deployer)(nil)
	_ bot.Resolver  = (*deployer.Deployer)(nil)
	_ bot.Unlocker  = (*deployer.Deployer)(nil)
	_ runs.Executor = (*deployer.Deployer)(nil)
)

// unavailableDeployer fails every deployment with why.
type unavailableDeployer struct{ why error }

func (u unavailableDeployer) Run(_ context.Context, dep *nixdeploy.Deployment, _ ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	return &nixdeploy.Report{DeploymentID: dep.ID, State: nixdeploy.StateFailed},
		&nixdeploy.StepError{Host: dep.Hosts[0], Step: "connect", ExitCode: 1, Err: u.why}
}

// botKeys runs the key preflight for "/nixdeploy keys check".
type botKeys struct {
	cfg   *nixdeploy.Config
	store *keys.Store
}

func (k botKeys) CheckKeys(ctx context.Context, hosts []string) (bot.KeyReport, error) {
	rep, err := keys.Check(ctx, k.cfg, k.store, hosts)
	if err != nil {
		return bot.KeyReport{}, err
	}
	var table strings.Builder
	if err := rep.Print(&table); err != nil {
		return bot.KeyReport{}, err
	}
	return bot.KeyReport{Table: table.String(), Failures: rep.Failures()}, nil
}

// botSchedules is the scheduler as the bot sees it; s is set once the
// scheduler exists (it needs the bot to deploy through).
type botSchedules struct{ s *schedules.Scheduler }

var errNoSchedules = bot.UserError("no schedules are configured in the fleet config", nixdeploy.ErrNotFound)

func (b *botSchedules) List(ctx context.Context) ([]bot.ScheduleInfo, error) {
	if b.s == nil {
		return nil, nil
	}
	list, err := b.s.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]bot.ScheduleInfo, len(list))
	for i, s := range list {
		out[i] = bot.ScheduleInfo{Name: s.Name, Spec: s.Spec, TimeZone: s.TimeZone, Hosts: s.Hosts, Action: s.Action,
			Strategy: s.Strategy, Paused: s.Paused, PausedBy: s.PausedBy, Next: s.Next, RunningID: s.RunningID}
		if s.Last != nil {
			out[i].LastOutcome, out[i].LastAt = s.Last.Outcome, s.Last.StartedAt
		}
	}
	return out, nil
}

func (b *botSchedules) Pause(ctx context.Context, name, by string) error {
	if b.s == nil {
		return errNoSchedules
	}
	return b.s.Pause(ctx, name, by)
}

func (b *botSchedules) Resume(ctx context.Context, name, by string) error {
	if b.s == nil {
		return errNoSchedules
	}
	return b.s.Resume(ctx, name, by)
}

func (b *botSchedules) RunNow(ctx context.Context, name, by string) (int64, error) {
	if b.s == nil {
		return 0, errNoSchedules
	}
	id, err := b.s.RunNow(ctx, name, by)
	if errors.Is(err, schedules.ErrRunning) {
		return 0, bot.UserError(fmt.Sprintf("schedule %s is already running; wait for its summary", name), err)
	}
	return id, err
}

// scheduleNotifier posts a run's summary to the fleet channel.
type scheduleNotifier struct{ b *bot.Bot }

func (n scheduleNotifier) Summary(ctx context.Context, s schedules.Summary) error {
	return n.b.Announce(ctx, s.Text())
}

// Waiting says in the channel that a run waits for a busy or locked host.
func (n scheduleNotifier) Waiting(ctx context.Context, w schedules.Wait) error {
	return n.b.Announce(ctx, w.Text())
}

// openBoards reaches the config's Turing Pi BMCs. A board without its
// password in the environment leaves them all unwired, with a warning
// naming the variable; the bot then says BMC commands are unavailable.
func openBoards(cfg *nixdeploy.Config, logger *slog.Logger) *bmc.Fleet {
	if len(cfg.BMCs) == 0 {
		return nil
	}
	f, err := bmc.NewFleet(cfg, bmc.FleetOptions{
		Getenv: os.Getenv,
		Redact: func(s string) string { return deployer.RedactText(cfg, s) },
	})
	if err != nil {
		logger.Warn("BMC commands are unavailable", "reason", err.Error())
		return nil
	}
	return f
}

// bmcBot is the boards as the bot sees them: a nil interface, not a nil
// pointer, when there are none.
func (d *botDeps) bmcBot() bot.BMC {
	if d.boards == nil {
		return nil
	}
	return d.boards
}

// powerReader is the boards for the power metric, nil without any.
func (d *botDeps) powerReader() ops.PowerReader {
	if d.boards == nil {
		return nil
	}
	return d.boards
}
