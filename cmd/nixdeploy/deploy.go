package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/keys"
	"github.com/nixdeploy/nixdeploy/runs"
)

const deployUsage = `deploy [--action A] [--config FILE] [--ssh-key FILE] [--yes --i-understand-this-wipes-disks] HOST|@tag…

Runs a deployment from the terminal and streams every line to stdout as
"[host step] line". Hosts are names, @tags or globs from the fleet config;
they run in fleet order, one at a time, and the run stops at the first
failure. The action is switch unless --action says otherwise.

install wipes disks: you are asked to type each host's name. Scripts skip
the question only with stdin not a terminal and both --yes and
--i-understand-this-wipes-disks.

The database is $NIXDEPLOY_DB (default ./nixdeploy.db); the bot's SSH key is
--ssh-key or $NIXDEPLOY_SSH_KEY.`

func cmdDeploy(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "deploy", deployUsage)
	actionName := fs.String("action", string(nixdeploy.ActionSwitch), "`action`: switch, boot, test, dry-activate, rollback or install")
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	sshKey := fs.String("ssh-key", "", "the bot's SSH private key `file` (default: $"+deployer.ClientKeyEnv+")")
	yes := fs.Bool("yes", false, "do not ask before an install (needs --i-understand-this-wipes-disks and stdin not a terminal)")
	wipe := fs.Bool("i-understand-this-wipes-disks", false, "acknowledge that install formats the configured disks")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("deploy: name at least one host or @tag")
	}
	action, err := nixdeploy.ParseAction(*actionName)
	if err != nil {
		return usageErrorf("deploy: %v", err)
	}
	if (*yes || *wipe) && !action.Destructive() {
		return usageErrorf("deploy: --yes and --i-understand-this-wipes-disks are only for install")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	hosts, err := cfg.Select(fs.Args())
	if err != nil {
		return &exitError{code: 1, msg: "deploy: " + err.Error()}
	}
	if action.Destructive() {
		if err := confirmWipe(s, hosts, *yes, *wipe); err != nil {
			return err
		}
	}

	client, err := deployer.LoadClientKey(*sshKey)
	if err != nil {
		return &exitError{code: 1, msg: "deploy: " + err.Error()}
	}
	ks, err := keys.OpenStore(cfg)
	if err != nil {
		return &exitError{code: 1, msg: "deploy: " + err.Error()}
	}
	store, interrupted, err := db.Open(ctx, db.PathFromEnv())
	if err != nil {
		return err
	}
	defer store.Close()
	for _, d := range interrupted {
		fmt.Fprintf(s.err, "nixdeploy: deployment %d (%s %s) was interrupted by a restart\n", d.ID, d.Action, strings.Join(d.Hosts, ", "))
	}
	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// A host on a BMC that cannot be reached after activation gets its
	// serial console into the log; a terminal deployment never resets it.
	var board deployer.BMC
	if f := openBoards(cfg, logger); f != nil {
		board = f
	}
	d, err := deployer.New(deployer.Options{
		Config:    cfg,
		Store:     store,
		HostKeys:  ks,
		ClientKey: client,
		BMC:       board,
		Outage:    cfg.Timeouts.Outage.Duration,
		Logger:    logger,
		Preflight: func(ctx context.Context, host string) error {
			rep, err := keys.Check(ctx, cfg, ks, []string{host})
			if err != nil {
				return err
			}
			if !rep.OK() {
				return errors.New(strings.Join(rep.Failures(), "; "))
			}
			return nil
		},
	})
	if err != nil {
		return &exitError{code: 1, msg: "deploy: " + err.Error()}
	}
	life := runs.New(store, d)
	reattachLeft(ctx, life, s.err, func(nixdeploy.Deployment) deployer.Sink { return deployer.TextSink(s.out) })
	sweep(ctx, d, slog.New(slog.DiscardHandler), s.err)

	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	dep := &nixdeploy.Deployment{Hosts: names, Action: action, Requester: requester(), Source: nixdeploy.SourceCLI}
	rep, err := life.Run(ctx, dep, deployer.TextSink(s.out))
	if err == nil {
		fmt.Fprintf(s.out, "deployment %d: %s\n", dep.ID, rep.Summary())
		return nil
	}
	if rep == nil {
		return &exitError{code: 1, msg: "deploy: " + err.Error()}
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(s.err, "nixdeploy: deployment %d cancelled: %s\n", dep.ID, rep.Summary())
		return err
	}
	var se *deployer.StepError
	if errors.As(err, &se) {
		return &exitError{code: 1, msg: fmt.Sprintf("deployment %d failed at step %s on %s: %v (%s)", dep.ID, se.Step, se.Host, se.Err, rep.Summary())}
	}
	return &exitError{code: 1, msg: fmt.Sprintf("deployment %d failed: %v", dep.ID, err)}
}

// confirmWipe asks the operator to type each host's name before an
// install. --yes skips the question only for scripts: stdin must not be a
// terminal and the wipe acknowledgement must be given too.
func confirmWipe(s stdio, hosts []nixdeploy.Host, yes, wipe bool) error {
	tty := isTerminal(s.in)
	if yes || wipe {
		if !yes || !wipe {
			return usageErrorf("deploy: --yes and --i-understand-this-wipes-disks go together")
		}
		if tty {
			return usageErrorf("deploy: --yes is for scripts; at a terminal, type the host name when asked")
		}
		return nil
	}
	r := bufio.NewReader(s.in)
	for _, h := range hosts {
		fmt.Fprintf(s.err, "install formats %s on %s (%s) and erases everything on it.\nType %s to confirm: ", h.Disk, h.Name, h.Address, h.Name)
		line, err := r.ReadString('\n')
		if strings.TrimSpace(line) != h.Name {
			if err != nil && err != io.EOF {
				return err
			}
			return &exitError{code: 1, msg: fmt.Sprintf("deploy: install of %s not confirmed; nothing was done", h.Name)}
		}
	}
	return nil
}

// isTerminal reports whether r is a terminal. /dev/null is a character
// device too, so the mode bits are not enough: isatty asks the terminal
// driver.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// requester names the operator in the deployment record.
func requester() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}
