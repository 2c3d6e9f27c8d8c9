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
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/ops"
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
	envBackupDir   = "NIXDEPLOY_BACKUP_DIR"
)

const serveUsage = `serve [--config FILE] [--listen ADDR] [--ssh-key FILE] [--shutdown-grace D]
      [--backup-dir DIR] [--backup-keep N] [--backup-every D] [--slack-timeout D]

Runs the Slack bot and the schedules. Slack credentials come from the
environment: SLACK_BOT_TOKEN (xoxb-…) always; SLACK_SIGNING_SECRET for HTTP
mode (POST /slack/commands and /slack/events); or SLACK_APP_TOKEN (xapp-…)
for Socket Mode, which needs no public URL.

In both modes it serves GET /healthz (liveness), GET /readyz (the database
answers, Slack's auth.test passed, the schedules are loaded) and GET
/metrics (Prometheus). On SIGTERM it stops taking requests, lets running
deployments finish for --shutdown-grace, then stops the rest, records them
as interrupted and says so in the channel.

The database is $NIXDEPLOY_DB (default ./nixdeploy.db). With --backup-dir or
$NIXDEPLOY_BACKUP_DIR set, an online backup is written there daily and the
newest --backup-keep are kept (restore one with nixdeploy restore). The
bot's SSH key is --ssh-key or $NIXDEPLOY_SSH_KEY. Logs are JSON unless
stderr is a terminal; NIXDEPLOY_LOG_FORMAT=json or text decides.`

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

func cmdServe(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "serve", serveUsage)
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	listen := fs.String("listen", ":8080", "`address` for Slack's requests, /healthz, /readyz and /metrics")
	sshKey := fs.String("ssh-key", "", "the bot's SSH private key `file` (default $NIXDEPLOY_SSH_KEY)")
	grace := fs.Duration("shutdown-grace", 2*time.Minute, "after SIGTERM, how long running deployments may go on before they are interrupted")
	backupDir := fs.String("backup-dir", os.Getenv(envBackupDir), "`directory` of the daily database backups (env "+envBackupDir+"; empty: none)")
	backupKeep := fs.Int("backup-keep", 7, "how many backups to keep")
	backupEvery := fs.Duration("backup-every", 24*time.Hour, "time between two backups")
	slackTimeout := fs.Duration("slack-timeout", defaultSlackTimeout, "bound on each call to Slack's Web API, auth.test at start included")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("serve: unexpected argument %q", fs.Arg(0))
	case *grace < 0:
		return usageErrorf("serve: --shutdown-grace must not be negative")
	case *backupKeep < 1:
		return usageErrorf("serve: --backup-keep must be at least 1")
	case *backupEvery <= 0:
		return usageErrorf("serve: --backup-every must be positive")
	case *slackTimeout <= 0:
		return usageErrorf("serve: --slack-timeout must be positive")
	}
	creds, err := slackCredsFromEnv()
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := checkLocalRunnerOnPath(cfg); err != nil {
		return err
	}
	logger := newLogger(s.err, slog.LevelInfo)

	// Listen first, so probes see the bot getting ready: /readyz answers
	// 503 until the database, Slack and the schedules are.
	health := ops.NewHealth("database", "slack", "schedules")
	var metricsH, slackH lateHandler
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", health.Livez)
	mux.HandleFunc("GET /readyz", health.Readyz)
	mux.Handle("GET /metrics", &metricsH)
	mux.Handle("POST /slack/", &slackH)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv, lln := ops.NewServer(mux, ln, ops.DefaultServerLimits)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lln) }()
	ready := false
	defer func() {
		if !ready {
			srv.Close()
		}
	}()

	// Every Web API call is bounded: a Slack that accepts the connection
	// and never answers must not hang serve (auth.test) or a deployment's
	// messages for ever (issue 15, attack 7).
	opts := []slack.Option{slack.OptionHTTPClient(&http.Client{Timeout: *slackTimeout})}
	if creds.apiURL != "" {
		opts = append(opts, slack.OptionAPIURL(creds.apiURL))
	}
	if creds.appToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(creds.appToken))
	}
	api := slack.New(creds.botToken, opts...)
	actx, cancelAuth := context.WithTimeout(ctx, *slackTimeout)
	auth, err := api.AuthTestContext(actx)
	cancelAuth()
	if err != nil {
		return slackStartError(err, *slackTimeout)
	}
	logger.Info("slack bot identified", "bot_user", auth.UserID, "team", auth.Team)
	health.Ready("slack")

	deps, err := openBotDeps(ctx, cfg, depsOptions{sshKey: *sshKey}, logger)
	if err != nil {
		return err
	}
	defer deps.close()
	health.Probe("database", deps.store.Ping)
	names := make([]string, len(cfg.Schedules))
	for i, sc := range cfg.Schedules {
		names[i] = sc.Name
	}
	metrics := ops.NewMetrics(ops.MetricsOptions{Store: deps.store, Schedules: names, Logger: logger, Power: deps.powerReader()})
	metricsH.set(metrics.Handler())
	b, err := bot.New(bot.Options{
		Config: cfg, Store: deps.store, Lifecycle: deps.life, Deployer: deps.deployer, Locks: deps.locks, Keys: deps.keys,
		Interrupted: deps.interrupted, BotUser: auth.UserID, Logger: logger,
		Chat: bot.NewSlackChat(api, bot.SlackChatOptions{Logger: logger}), Observer: metrics,
		BMC: deps.bmcBot(),
	})
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		b.Close()
		return err
	}
	if err := deps.startSchedules(ctx, b); err != nil {
		b.Close()
		return err
	}
	health.Ready("schedules")

	mode := "socket"
	if creds.appToken == "" {
		mode = "http"
		slackH.set(b.HTTPHandler(creds.signingSecret))
	} else {
		slackH.set(http.NotFoundHandler())
		client := socketmode.New(api, socketmode.OptionLog(log.New(io.Discard, "", 0)))
		go func() { errc <- b.RunSocketMode(ctx, client) }()
	}
	go pruneEvents(ctx, deps.store, logger)
	if dd, ok := deps.deployer.(*deployer.Deployer); ok {
		startRecovery(ctx, dd, logger)
	}
	if *backupDir != "" {
		go runBackups(ctx, deps.store, *backupDir, *backupKeep, *backupEvery, logger)
	} else {
		logger.Warn("database backups are off: set " + envBackupDir + " or --backup-dir")
	}
	ready = true
	logger.Info("serving", "mode", mode, "addr", ln.Addr().String())
	fmt.Fprintf(s.err, "nixdeploy: serving Slack (%s mode) on %s\n", mode, ln.Addr())

	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	// Stop taking requests first, then give running deployments their
	// grace; whatever still runs after it is interrupted and announced.
	logger.Info("shutting down", "grace", grace.String())
	health.Stopping()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	interrupted := deps.shutdown(b, *grace)
	logger.Info("stopped", "interrupted", len(interrupted))
	return err
}

// lateHandler answers 503 until its handler is set: the listener starts
// before the bot is ready.
type lateHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lateHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	http.Error(w, "nixdeploy is starting", http.StatusServiceUnavailable)
}

// runBackups writes an online backup of the database into dir every
// interval, keeping the newest keep. One is written at once when the newest
// is older than the interval: restarts (each fly deploy is one) must not
// postpone the daily backup forever.
func runBackups(ctx context.Context, store *db.DB, dir string, keep int, every time.Duration, logger *slog.Logger) {
	report := func(path string, err error) {
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("database backup failed", "dir", dir, "err", err)
		case err == nil:
			logger.Info("database backed up", "path", path, "keep", keep)
		}
	}
	if backupDue(dir, every) {
		report(store.Backup(ctx, dir, keep))
	}
	store.BackupLoop(ctx, dir, keep, every, report)
}

func backupDue(dir string, every time.Duration) bool {
	list, err := db.Backups(dir)
	if err != nil || len(list) == 0 {
		return true
	}
	fi, err := os.Stat(list[len(list)-1])
	return err != nil || time.Since(fi.ModTime()) >= every
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

// defaultSlackTimeout bounds one Web API call. A file upload is one call
// of a few MB at most; everything else is small.
const defaultSlackTimeout = 30 * time.Second

// slackStartError says in one line why auth.test failed: Slack refused the
// token (fix the token), Slack answered with an HTTP error (Slack's
// trouble), or Slack could not be reached (the network's): only the first
// is about the token.
func slackStartError(err error, timeout time.Duration) error {
	var se slack.SlackErrorResponse
	var sc slack.StatusCodeError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return &exitError{code: 1, msg: fmt.Sprintf("Slack refused %s (%s): check the token and the app's installation", envBotToken, se.Err)}
	case errors.As(err, &sc):
		return &exitError{code: 1, msg: fmt.Sprintf("Slack answered auth.test with HTTP %d: Slack is having trouble, try again later", sc.Code)}
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &exitError{code: 1, msg: fmt.Sprintf("Slack did not answer auth.test within %s: check this machine's network and DNS, or raise --slack-timeout", timeout)}
	}
	return &exitError{code: 1, msg: fmt.Sprintf("could not reach Slack (%s): check this machine's network and DNS", slackErrCode(err))}
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
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + " failed"
	}
	return "no answer"
}
