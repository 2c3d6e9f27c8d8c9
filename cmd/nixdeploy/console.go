package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nixdeploy/nixdeploy/bot"
)

const consoleUsage = `console [--config FILE] [--as USER] [--channel CHANNEL] [--ssh-key FILE]

Drives the bot's handlers from a terminal, for when Slack is unavailable and
as a simple test driver. Type one line at a time:

  /nixdeploy COMMAND       run a command as the current user
  :REACTION: [as USER]     react to the newest approval message
  as USER                  switch the current user
  quit                     leave (so does end of input)

Messages, updates, ephemeral replies and uploads are printed as text. Each
line is handled to the end (a deployment included) before the next is read.
Approvals and policy are those of the fleet config; the database is
$NIXDEPLOY_DB, shared with serve.`

func cmdConsole(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "console", consoleUsage)
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	as := fs.String("as", "", "the Slack user `id` to act as (default: the first deployer)")
	channel := fs.String("channel", "", "the `channel` to post to (default: slack.channel of the config)")
	sshKey := fs.String("ssh-key", "", "the bot's SSH private key `file` (default $NIXDEPLOY_SSH_KEY)")
	verbose := fs.Bool("v", false, "log at info level to stderr (default: warnings only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("console: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	user := *as
	if user == "" {
		if len(cfg.Slack.Deployers) == 0 {
			return usageErrorf("console: the config names no deployers; pass --as USER")
		}
		user = cfg.Slack.Deployers[0]
	}
	ch := *channel
	if ch == "" {
		ch = cfg.Slack.Channel
	}
	if ch == "" {
		ch = "console"
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := newLogger(s.err, level)

	deps, err := openBotDeps(ctx, cfg, depsOptions{sshKey: *sshKey}, logger)
	if err != nil {
		return err
	}
	defer deps.close()
	term := bot.NewTerminal(s.out)
	b, err := bot.New(bot.Options{
		Config: cfg, Store: deps.store, Lifecycle: deps.life, Chat: term, Deployer: deps.deployer, Locks: deps.locks, Keys: deps.keys,
		Interrupted: deps.interrupted, BotUser: "nixdeploy", Logger: logger,
		BMC: deps.bmcBot(),
	})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		return err
	}
	if err := deps.newScheduler(b); err != nil {
		return err
	}
	// A reaction typed now applies to the newest approval still pending,
	// even one posted by an earlier session or by serve.
	pending, err := deps.store.PendingApprovals(ctx)
	if err != nil {
		return err
	}
	if n := len(pending); n > 0 && pending[n-1].MessageTS != "" {
		term.SetLastApproval(pending[n-1].Channel, pending[n-1].MessageTS)
		fmt.Fprintf(s.out, "Pending approval: #%d (message %s); a reaction applies to it.\n", pending[n-1].DeploymentID, pending[n-1].MessageTS)
	}
	fmt.Fprintf(s.out, "nixdeploy console: acting as @%s in %s. Type /nixdeploy help, :%s: as USER, or quit.\n",
		user, ch, cfg.Slack.ApproveReaction)
	return bot.Console(ctx, b, term, s.in, s.out, user, ch)
}
