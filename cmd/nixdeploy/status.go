package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/ops"
	"github.com/nixdeploy/nixdeploy/keys"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// The drift board's parts fit each other as they are.
var (
	_ bot.HostReader        = (*deployer.Deployer)(nil)
	_ bot.ReadingObserver   = (*ops.Metrics)(nil)
	_ schedules.Reporter    = (*bot.Bot)(nil)
	_ schedules.ReportStore = (*db.DB)(nil)
)

const statusUsage = `status [--config FILE] [--ssh-key FILE] [HOST|@tag…]

Prints the drift board: one row per host (every host unless some are
named) with its running system (/run/current-system), its booted one
(/run/booted-system; "reboot pending" when they differ), the system the
flake's current locked revision evaluates to, drift (yes, no or unknown,
with why), its last deployment, its locks and the time of the reading.
Hosts are read over their pinned SSH connections; the runner locks the
flake and evaluates the systems.

The database is $NIXDEPLOY_DB (default ./nixdeploy.db); the bot's SSH key is
--ssh-key or $NIXDEPLOY_SSH_KEY.`

func cmdStatus(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "status", statusUsage)
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	sshKey := fs.String("ssh-key", "", "the bot's SSH private key `file` (default: $"+deployer.ClientKeyEnv+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	var names []string
	if fs.NArg() > 0 {
		hosts, err := cfg.Select(fs.Args())
		if err != nil {
			return &exitError{code: 1, msg: "status: " + err.Error()}
		}
		for _, h := range hosts {
			names = append(names, h.Name)
		}
	}
	client, err := deployer.LoadClientKey(*sshKey)
	if err != nil {
		return &exitError{code: 1, msg: "status: " + err.Error()}
	}
	ks, err := keys.OpenStore(cfg)
	if err != nil {
		return &exitError{code: 1, msg: "status: " + err.Error()}
	}
	store, _, err := db.Open(ctx, db.PathFromEnv())
	if err != nil {
		return err
	}
	defer store.Close()
	d, err := deployer.New(deployer.Options{
		Config: cfg, Store: store, HostKeys: ks, ClientKey: client,
		Logger: slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return &exitError{code: 1, msg: "status: " + err.Error()}
	}
	board, err := readBoard(ctx, d, store, names)
	if err != nil {
		return &exitError{code: 1, msg: "status: " + err.Error()}
	}
	fmt.Fprint(s.out, board.Text())
	fmt.Fprintln(s.out, board.Summary())
	return nil
}

// readBoard reads hosts and adds each host's last deployment and its
// locks (a deployment claiming it in any process, a manual lock) from the
// database.
func readBoard(ctx context.Context, d *deployer.Deployer, store *db.DB, names []string) (nixdeploy.Board, error) {
	board := nixdeploy.Board{At: store.Now().UTC()}
	readings, err := d.ReadHosts(ctx, names)
	if err != nil {
		return board, err
	}
	for _, rd := range readings {
		row := nixdeploy.BoardRow{HostReading: rd}
		deps, err := store.Deployments(ctx, rd.Host, 1)
		if err != nil {
			return board, err
		}
		if len(deps) > 0 {
			row.LastID, row.LastAction, row.LastState, row.LastRevision = deps[0].ID, deps[0].Action, deps[0].State, deps[0].Revision
		}
		if id, _, ok, err := store.HostClaim(ctx, rd.Host); err != nil {
			return board, err
		} else if ok {
			row.Locks = append(row.Locks, fmt.Sprintf("#%d running", id))
		}
		if l, ok, err := store.HostLockOf(ctx, rd.Host); err != nil {
			return board, err
		} else if ok {
			row.Locks = append(row.Locks, fmt.Sprintf("locked by @%s until %s", l.Holder, l.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")))
		}
		board.Rows = append(board.Rows, row)
	}
	return board, nil
}
