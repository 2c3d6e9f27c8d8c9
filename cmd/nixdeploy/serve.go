package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/keys"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// Environment variables of serve. Tokens come only from the environment
// (fly secrets), never from flags or the config file, and are never logged.
const (
	envBotToken      = "SLACK_BOT_TOKEN"
	envSigningSecret = "SLACK_SIGNING_SECRET"
	envAppToken      = "SLACK_APP_TOKEN"
	// envSlackAPIURL points the Web API client elsewhere, for tests.
	envSlackAPIURL = "NIXDEPLOY_SLACK_API_URL"
	envLogFormat   = "NIXDEPLOY_LOG_FORMAT"
)

const serveUsage = `serve [--config FILE] [--listen ADDR] [--ssh-key FILE]

Runs the Slack bot and the schedules. Slack credentials come from the
environment: SLACK_BOT_TOKEN (xoxb-…) always; SLACK_SIGNING_SECRET for HTTP
mode (POST /slack/commands and /slack/events); or SLACK_APP_TOKEN (xapp-…)
for Socket Mode, which needs no public URL. GET /healthz answers in both
modes. The database is $NIXDEPLOY_DB (default ./nixdeploy.db); the bot's SSH
key is --ssh-key or $NIXDEPLOY_SSH_KEY.`

// slackCreds are the Slack credentials from the environment.
type slackCreds struct {
	botToken, signingSecret, appToken, apiURL string
}

func slackCredsFromEnv() (slackCreds, error) {
	c := slackCreds{
		botToken:      strings.TrimSpace(os.Getenv(envBotToken)),
		signingSecret: strings.TrimSpace(os.Getenv(envSigningSecret)),
		appToken:      strings.TrimSpace(os.Getenv(envAppToken)),
		apiURL:        os.Getenv(envSlackAPIURL),
	}
	var missing []string
	switch {
	case c.botToken == "":
		missing = append(missing, envBotToken+" is not set: give the app's bot token (xoxb-…)")
	case !strings.HasPrefix(c.botToken, "xoxb-"):
		missing = append(missing, envBotToken+" is not a bot token: it must start with xoxb-")
	}
	switch {
	case c.appToken != "" && !strings.HasPrefix(c.appToken, "xapp-"):
		missing = append(missing, envAppToken+" is not an app-level token: it must start with xapp- (Socket Mode)")
	case c.appToken == "" && c.signingSecret == "":
		missing = append(missing, envSigningSecret+" is not set: HTTP mode needs the app's signing secret (or set "+envAppToken+" for Socket Mode)")
	}
	if len(missing) > 0 {
		return c, &exitError{code: 1, msg: strings.Join(missing, "; ")}
	}
	return c, nil
}

// newLogger logs to w, as JSON when NIXDEPLOY_LOG_FORMAT=json.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if os.Getenv(envLogFormat) == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func cmdServe(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "serve", serveUsage)
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	listen := fs.String("listen", ":8080", "`address` for Slack's requests and /healthz")
	sshKey := fs.String("ssh-key", "", "the bot's SSH private key `file` (default $NIXDEPLOY_SSH_KEY)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("serve: unexpected argument %q", fs.Arg(0))
	}
	creds, err := slackCredsFromEnv()
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	logger := newLogger(s.err, slog.LevelInfo)

	opts := []slack.Option{}
	if creds.apiURL != "" {
		opts = append(opts, slack.OptionAPIURL(creds.apiURL))
	}
	if creds.appToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(creds.appToken))
	}
	api := slack.New(creds.botToken, opts...)
	auth, err := api.AuthTestContext(ctx)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("Slack refused %s (%s): check the token and the app's installation", envBotToken, slackErrCode(err))}
	}
	logger.Info("slack bot identified", "bot_user", auth.UserID, "team", auth.Team)

	deps, err := openBotDeps(ctx, cfg, *sshKey, logger)
	if err != nil {
		return err
	}
	defer deps.close()
	b, err := bot.New(bot.Options{
		Config: cfg, Store: deps.store, Deployer: deps.deployer, Locks: deps.locks, Keys: deps.keys,
		Schedules: deps.schedules, Interrupted: deps.interrupted, BotUser: auth.UserID, Logger: logger,
		Chat: bot.NewSlackChat(api, bot.SlackChatOptions{Logger: logger}),
	})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		return err
	}
	if err := deps.startSchedules(ctx, b); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := deps.store.Ping(r.Context()); err != nil {
			logger.Error("health check", "err", err)
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mode := "socket"
	if creds.appToken == "" {
		mode = "http"
		h := b.HTTPHandler(creds.signingSecret)
		mux.Handle("POST /slack/", h)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("serving", "mode", mode, "addr", ln.Addr().String())
	fmt.Fprintf(s.err, "nixdeploy: serving Slack (%s mode) on %s\n", mode, ln.Addr())

	if creds.appToken != "" {
		client := socketmode.New(api, socketmode.OptionLog(log.New(io.Discard, "", 0)))
		go func() { errc <- b.RunSocketMode(ctx, client) }()
	}
	go pruneEvents(ctx, deps.store, logger)
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err != nil {
		return err
	}
	return nil
}

// pruneEvents forgets Slack event ids older than a day, hourly: Slack
// retries within minutes, so that is plenty for the dedupe.
func pruneEvents(ctx context.Context, store *db.DB, logger *slog.Logger) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		n, err := store.PruneEvents(ctx, time.Now().Add(-24*time.Hour))
		if err != nil && ctx.Err() == nil {
			logger.Warn("prune slack event ids", "err", err)
		} else if n > 0 {
			logger.Info("pruned slack event ids", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// slackErrCode is the Slack error code of err ("invalid_auth"), never
// anything that could hold a token.
func slackErrCode(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return fmt.Sprintf("HTTP %d", sc.Code)
	}
	if msg := err.Error(); len(msg) < 40 && !strings.ContainsAny(msg, " /:") {
		return msg
	}
	return "no answer"
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
}

// openBotDeps opens the database, the key store and the deployer. Without
// an SSH key the bot still starts, and every deployment fails with a
// sentence saying how to provide one.
func openBotDeps(ctx context.Context, cfg *nixdeploy.Config, sshKey string, logger *slog.Logger) (*botDeps, error) {
	store, interrupted, err := db.Open(ctx, db.PathFromEnv())
	if err != nil {
		return nil, err
	}
	d := &botDeps{store: store, interrupted: interrupted, locks: botLocks{store}, schedules: &botSchedules{}, cfg: cfg, log: logger}
	ks, err := keys.OpenStore(cfg)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open key store: %w", err)
	}
	d.keys = botKeys{cfg: cfg, store: ks}
	client, err := deployer.LoadClientKey(sshKey)
	if err != nil {
		logger.Warn("no usable SSH key: deployments will fail until one is configured", "reason", err.Error())
		d.deployer = unavailableDeployer{why: bot.UserError("nixdeploy has no SSH key to reach the fleet; set "+deployer.ClientKeyEnv+" or pass --ssh-key, then request it again", err)}
		return d, nil
	}
	dep, err := deployer.New(deployer.Options{
		Config: cfg, Store: store, HostKeys: ks, ClientKey: client, Logger: logger,
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
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	d.deployer = botDeployer{dep}
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
		Config: d.cfg, Store: d.store, Deployer: scheduleDeployer{b}, Notifier: scheduleNotifier{b}, Logger: d.log,
	})
	if err != nil {
		return err
	}
	d.schedules.s = s
	d.scheduler = s
	return nil
}

// startSchedules creates the scheduler and starts its timers.
func (d *botDeps) startSchedules(ctx context.Context, b *bot.Bot) error {
	if err := d.newScheduler(b); err != nil || d.scheduler == nil {
		return err
	}
	return d.scheduler.Start(ctx)
}

func (d *botDeps) close() {
	if d.scheduler != nil {
		d.scheduler.Stop()
		d.scheduler.Wait()
	}
	d.store.Close()
}

// botDeployer adapts the deployer to the bot and words its failures for
// users.
type botDeployer struct{ d *deployer.Deployer }

func (a botDeployer) Run(ctx context.Context, dep nixdeploy.Deployment, sink bot.Sink) bot.Result {
	rep, err := a.d.Run(ctx, &dep, sink)
	res := bot.Result{State: nixdeploy.StateSucceeded}
	if rep != nil {
		res.State = rep.State
	}
	if err == nil {
		return res
	}
	if res.State == nixdeploy.StateSucceeded || res.State == "" {
		res.State = nixdeploy.StateFailed
	}
	var se *deployer.StepError
	if errors.As(err, &se) {
		res.Host, res.Step, res.ExitCode = se.Host, se.Step, se.ExitCode
	}
	res.Err = deployErrorForUsers(err, res)
	return res
}

// deployErrorForUsers words a deployer error as one sentence; the raw
// error (which may quote output) stays in the log and the stored log.
func deployErrorForUsers(err error, r bot.Result) error {
	var um interface{ UserMessage() string }
	switch {
	case errors.Is(err, nixdeploy.ErrHostBusy), errors.Is(err, nixdeploy.ErrUnknownHost), errors.As(err, &um):
		return err
	case errors.Is(err, deployer.ErrCancelled), errors.Is(err, context.Canceled):
		return bot.UserError("the deployment was cancelled; cleanup steps still ran", err)
	case errors.Is(err, deployer.ErrHostKeyMismatch):
		return bot.UserError(fmt.Sprintf("%s did not present its pinned host key, so nothing was sent to it; check it with /nixdeploy keys check %s", r.Host, r.Host), err)
	case errors.Is(err, deployer.ErrAuth):
		return bot.UserError("the SSH key of nixdeploy was refused; check the authorized keys of the runner and the targets", err)
	case errors.Is(err, deployer.ErrConnectionLost):
		return bot.UserError(fmt.Sprintf("the connection to %s was lost during step %s; check that it is up and run it again", r.Host, r.Step), err)
	case errors.Is(err, deployer.ErrStepTimeout):
		return bot.UserError(fmt.Sprintf("step %s on %s timed out; the log in the thread shows where it stopped", r.Step, r.Host), err)
	case errors.Is(err, deployer.ErrVerify):
		return bot.UserError(fmt.Sprintf("%s did not pass verification after the change; the log lists the failed units", r.Host), err)
	case r.Step != "":
		return bot.UserError(fmt.Sprintf("step %s on %s failed with exit code %d; the last lines and the log in the thread say why", r.Step, r.Host, r.ExitCode), err)
	}
	return err
}

// unavailableDeployer fails every deployment with why.
type unavailableDeployer struct{ why error }

func (u unavailableDeployer) Run(_ context.Context, dep nixdeploy.Deployment, _ bot.Sink) bot.Result {
	return bot.Result{State: nixdeploy.StateFailed, ExitCode: 1, Host: dep.Hosts[0], Step: "connect", Err: u.why}
}

// botLocks adapts db's manual host locks.
type botLocks struct{ d *db.DB }

func (l botLocks) Lock(ctx context.Context, h bot.HostLock) error {
	err := l.d.LockHost(ctx, db.HostLock(h))
	if errors.Is(err, db.ErrLocked) {
		return fmt.Errorf("%w: %w", nixdeploy.ErrHostBusy, err)
	}
	return err
}

func (l botLocks) Unlock(ctx context.Context, host string) (bool, error) {
	return l.d.UnlockHost(ctx, host)
}

func (l botLocks) LockOf(ctx context.Context, host string) (bot.HostLock, bool, error) {
	h, ok, err := l.d.HostLockOf(ctx, host)
	return bot.HostLock(h), ok, err
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

// scheduleDeployer runs a schedule's host through the bot.
type scheduleDeployer struct{ b *bot.Bot }

func (s scheduleDeployer) Deploy(ctx context.Context, req schedules.HostRequest) (schedules.Result, error) {
	by := "schedule:" + req.Schedule
	if req.By != "" {
		by = req.By
	}
	dep, err := s.b.Deploy(ctx, nixdeploy.Request{Action: req.Action, Hosts: []string{req.Host}, Requester: by, Source: nixdeploy.SourceSchedule})
	if err != nil {
		return schedules.Result{DeploymentID: dep.ID}, err
	}
	res := schedules.Result{DeploymentID: dep.ID, State: dep.State}
	if dep.State != nixdeploy.StateSucceeded {
		why := dep.Error
		if why == "" {
			why = string(dep.State)
		}
		res.Err = errors.New(why)
	}
	return res, nil
}

// scheduleNotifier posts a run's summary to the fleet channel.
type scheduleNotifier struct{ b *bot.Bot }

func (n scheduleNotifier) Summary(ctx context.Context, s schedules.Summary) error {
	return n.b.Announce(ctx, s.Text())
}
