package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	// life owns every deployment; the bot is its Presenter and the
	// scheduler submits through it.
	life      *runs.Lifecycle
	locks     bot.Locks
	keys      bot.KeyChecker
	cfg       *nixdeploy.Config
	log       *slog.Logger
	scheduler *schedules.Scheduler
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
	d := &botDeps{store: store, interrupted: interrupted, locks: store, cfg: cfg, log: logger}
	ks, err := keys.OpenStore(cfg)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open key store: %w", err)
	}
	d.keys = keys.Checker{Config: cfg, Store: ks}
	d.boards = openBoards(cfg, logger)
	client, noKey := o.clientKey, error(nil)
	if client == nil {
		if client, err = deployer.LoadClientKey(o.sshKey); err != nil {
			logger.Warn("no usable SSH key: deployments will fail until one is configured", "reason", err.Error())
			noKey = bot.NoSSHKey(deployer.ClientKeyEnv, err)
		}
	}
	opts := deployer.Options{
		Config: cfg, Store: store, HostKeys: ks, ClientKey: client, NoClientKey: noKey, Logger: logger, Outage: cfg.Timeouts.Outage.Duration,
		Preflight: func(ctx context.Context, host string) error {
			rep, err := keys.Check(ctx, cfg, ks, []string{host})
			if err != nil {
				return err
			}
			if f := rep.Failures(); len(f) > 0 {
				return bot.KeyPreflightFailed(f)
			}
			return nil
		},
	}
	if d.boards != nil {
		opts.BMC = d.boards
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
	d.life = runs.NewWith(runs.Options{Store: store, Executor: dep, Config: d.config, Logger: logger})
	return d, nil
}

// config is the fleet config the lifecycle decides against.
func (d *botDeps) config() *nixdeploy.Config { return d.cfg }

// newScheduler creates the scheduler of the configured schedules, which
// deploys through the lifecycle (so scheduled runs stream to the channel
// like requested ones) and announces through the bot. Its timers start
// only with Start.
func (d *botDeps) newScheduler(b *bot.Bot) error {
	if len(d.cfg.Schedules) == 0 {
		return nil
	}
	s, err := schedules.New(schedules.Options{
		Config: d.cfg, Store: d.store, Deployer: d.life, Notifier: b, Reporter: b, Logger: d.log,
	})
	if err != nil {
		return err
	}
	b.SetSchedules(s)
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

// The parts satisfy each other's interfaces as they are, with no
// adapter; the bot and runs find the optional ones (Unlocker, Resolver,
// Fingerprinter, Checker) by type assertion, so these fail the build if a
// signature drifts rather than silently turning the features off.
var (
	_ bot.Deployer       = (*deployer.Deployer)(nil)
	_ bot.Unlocker       = (*deployer.Deployer)(nil)
	_ runs.Executor      = (*deployer.Deployer)(nil)
	_ runs.Resolver      = (*deployer.Deployer)(nil)
	_ runs.Fingerprinter = (*deployer.Deployer)(nil)
	_ runs.Checker       = (*deployer.Deployer)(nil)
	_ runs.Store         = (*db.DB)(nil)
	_ runs.Claims        = (*db.DB)(nil)
	_ runs.Locks         = (*db.DB)(nil)
	_ schedules.Deployer = (*runs.Lifecycle)(nil)
	_ schedules.Notifier = (*bot.Bot)(nil)
	_ bot.Schedules      = (*schedules.Scheduler)(nil)
	_ bot.KeyChecker     = keys.Checker{}
)

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
