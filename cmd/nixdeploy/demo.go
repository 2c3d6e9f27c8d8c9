package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"

	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/simfleet"
	"github.com/nixdeploy/nixdeploy/keys"
)

const demoUsage = `demo [--script FILE] [--pace D] [--db FILE] [--dir DIR] [--keep] [--shutdown-grace D] [-v]

Runs the real bot, deployer, schedules and database in this terminal, with
no Slack and no hardware: the fleet (ganon and rk1-node1..4) and the runner
are simulated by in-process SSH servers on loopback that present the
fleet's pre-generated host keys (made for the demo with keys init) and
answer the deployer's commands with realistic nixos-anywhere and
nixos-rebuild output. rk1-node2's configuration is broken on purpose.

You are @ALICE; @BOB is a second approver. Lines are those of nixdeploy
console, plus two:

  /nixdeploy COMMAND       run a command as the current user
  :REACTION: [as USER]     react to the newest approval message
  as USER                  switch the current user
  echo TEXT                print TEXT (narration for scripts)
  wait                     wait until nothing runs (each line does anyway)
  quit                     leave (so does end of input)

At a terminal it prints a guided tour and reads your lines; with --script
it runs FILE; otherwise (stdin not a terminal) it runs the built-in tour,
so "nixdeploy demo </dev/null" shows the whole story and exits.

Everything lives in a temporary directory that is removed at the end,
unless --keep or --dir is given; --db puts the database elsewhere, to look
at it afterwards.`

// demoScript is the built-in tour.
const demoScript = `echo 1. A switch. Its output streams into one status message; the complete log goes into the thread.
/nixdeploy rk1-node3
echo 2. An install wipes the disk, so it waits for an approval from someone else.
/nixdeploy install ganon
echo    ALICE asked for it, so her own approval does not count:
:white_check_mark:
echo 3. BOB approves. The install runs phase by phase (kexec, disko, install, reboot), then the switch and the checks.
:white_check_mark: as BOB
echo 4. The nightly rolling rebuild of the RK1 nodes, started by hand. rk1-node1 hangs after its switch: the run reads its serial console and power-cycles it through the Turing Pi BMC, and it comes back. rk1-node2's configuration is broken, so the run halts there and leaves rk1-node3 and rk1-node4 alone.
/nixdeploy schedule run nightly-rk1
echo 5. The drift board: what each host runs, what it booted and what the flake's current revision says it should run. rk1-node4, left alone by the halted run, still runs its old system; rk1-node2's configuration does not evaluate; the switched hosts wait for a reboot into their new system.
/nixdeploy status
echo 6. A canary night. rk1-node4 goes first, activated with test under a rollback guard; its node exporter fails the health check, so the guard is not disarmed and puts the old system back, and no other node is touched.
/nixdeploy schedule run canary-rk1
echo What the database recorded:
/nixdeploy history
`

// The demo's people and channel.
const (
	demoAlice   = "ALICE"
	demoBob     = "BOB"
	demoChannel = "#fleet"
)

// demoHost is a host of the demo fleet, as in examples/fleet.
type demoHost struct {
	name, system, disk, tag string
}

var demoHosts = []demoHost{
	{"ganon", nixdeploy.SystemX86_64, "/dev/nvme0n1", "desktop"},
	{"rk1-node1", nixdeploy.SystemAarch64, "/dev/mmcblk0", "rk1"},
	{"rk1-node2", nixdeploy.SystemAarch64, "/dev/mmcblk0", "rk1"},
	{"rk1-node3", nixdeploy.SystemAarch64, "/dev/mmcblk0", "rk1"},
	{"rk1-node4", nixdeploy.SystemAarch64, "/dev/mmcblk0", "rk1"},
}

func cmdDemo(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "demo", demoUsage)
	script := fs.String("script", "", "run the lines of `file` instead of the tour")
	pace := fs.Duration("pace", 400*time.Millisecond, "unit of simulated time (a switch takes about 6, an install about 25; 0: no waiting)")
	dbPath := fs.String("db", "", "database `file` (default: in the demo directory)")
	dir := fs.String("dir", "", "demo `directory` for keys, config and database, kept afterwards (default: a temporary one)")
	keep := fs.Bool("keep", false, "keep the temporary directory")
	grace := fs.Duration("shutdown-grace", 5*time.Second, "on SIGINT or SIGTERM, how long running deployments may go on before they are interrupted")
	verbose := fs.Bool("v", false, "log at info level to stderr (default: errors only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("demo: unexpected argument %q", fs.Arg(0))
	}
	if *pace < 0 || *grace < 0 {
		return usageErrorf("demo: --pace and --shutdown-grace must not be negative")
	}
	var in io.Reader
	interactive := false
	switch {
	case *script != "":
		f, err := os.Open(*script)
		if err != nil {
			return &exitError{code: 1, msg: "demo: " + err.Error()}
		}
		defer f.Close()
		in = f
	case isTerminal(s.in):
		in, interactive = s.in, true
	default:
		in = strings.NewReader(demoScript)
	}

	work := *dir
	if work == "" {
		tmp, err := os.MkdirTemp("", "nixdeploy-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		work = tmp
		if !*keep {
			defer os.RemoveAll(tmp)
		}
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if *dbPath == "" {
		*dbPath = filepath.Join(work, "nixdeploy.db")
	}
	// The terminal shows every warning already, as the channel would.
	level := slog.LevelError
	if *verbose {
		level = slog.LevelInfo
	}
	logger := newLogger(s.err, level)

	board := startDemoBoard()
	defer board.close()
	fleet, client, err := startDemoFleet(ctx, work, *pace, board)
	if err != nil {
		return err
	}
	defer fleet.Close()
	board.fleet = fleet
	cfgPath := filepath.Join(work, "nixdeploy.toml")
	if err := os.WriteFile(cfgPath, []byte(demoConfig(fleet, board)+demoCanaryConfig(*pace)), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	boards, err := board.client(cfg)
	if err != nil {
		return err
	}
	deps, err := openBotDeps(ctx, cfg, depsOptions{dbPath: *dbPath, clientKey: client, tune: func(o *deployer.Options) {
		// A simulated reboot takes a few paces, not minutes.
		o.WaitBackoff = max(*pace/4, 50*time.Millisecond)
		o.KillGrace = time.Second
		o.BMC = boards
	}}, logger)
	if err != nil {
		return err
	}
	defer deps.close()
	out := &lockedWriter{w: s.out}
	term := bot.NewTerminal(out)
	b, err := bot.New(bot.Options{
		Config: cfg, Store: deps.store, Lifecycle: deps.life, Chat: demoChat{Terminal: term, w: out}, Deployer: deps.deployer,
		Locks: deps.locks, Keys: deps.keys, Interrupted: deps.interrupted,
		BotUser: "nixdeploy", Logger: logger, TailLines: 6, BMC: boards,
	})
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		b.Close()
		return err
	}
	if err := deps.newScheduler(b); err != nil {
		b.Close()
		return err
	}
	printDemoBanner(out, fleet, work, interactive)

	d := &demoSession{b: b, term: term, out: out, deps: deps, user: demoAlice, prompt: interactive}
	err = d.run(ctx, in)
	if ctx.Err() != nil {
		fmt.Fprintf(out, "\nnixdeploy demo: stopping; deployments still running get %s to finish\n", *grace)
		for _, dep := range deps.shutdown(b, *grace) {
			fmt.Fprintf(out, "nixdeploy demo: #%d %s %s was interrupted\n", dep.ID, dep.Action, strings.Join(dep.Hosts, ", "))
		}
		return ctx.Err()
	}
	b.Close()
	if err != nil {
		return err
	}
	n, derr := deps.store.Deployments(context.WithoutCancel(ctx), "", 1)
	where := *dbPath
	switch {
	case derr != nil:
		return derr
	case *dir == "" && !*keep && filepath.Dir(*dbPath) == work:
		where += " (removed now; keep it with --keep or --db FILE)"
	}
	count := int64(0)
	if len(n) > 0 {
		count = n[0].ID
	}
	fmt.Fprintf(out, "\nnixdeploy demo: done; %d deployments recorded in %s\n", count, where)
	return nil
}

// startDemoFleet generates the fleet's host keys with the key workflow
// (keys init into dir/keys) and a client key for the bot, and starts the
// simulated fleet with rk1-node2 broken.
func startDemoFleet(ctx context.Context, dir string, pace time.Duration, board *demoBoard) (*simfleet.Fleet, ssh.Signer, error) {
	store := keys.NewStore(filepath.Join(dir, "keys"), nil)
	names := make([]string, len(demoHosts))
	for i, h := range demoHosts {
		names[i] = h.name
	}
	changes, err := store.Init(ctx, names)
	if err != nil {
		return nil, nil, fmt.Errorf("demo: generate host keys: %w", err)
	}
	for _, c := range changes {
		if c.Err != nil {
			return nil, nil, fmt.Errorf("demo: generate host keys: %w", c.Err)
		}
	}
	// ganon's LUKS layout needs its disk key; keys init creates it once
	// it knows the config, the demo makes sure it is there.
	for _, h := range demoHosts {
		if h.system != nixdeploy.SystemX86_64 {
			continue
		}
		if _, err := store.DiskKey(h.name); err != nil {
			if err := os.WriteFile(store.DiskKeyPath(h.name), []byte(rand.Text()), 0o600); err != nil {
				return nil, nil, fmt.Errorf("demo: write the disk key: %w", err)
			}
		}
	}
	var hosts []simfleet.Host
	for _, h := range demoHosts {
		signer, err := store.HostSigner(h.name)
		if err != nil {
			return nil, nil, fmt.Errorf("demo: %w", err)
		}
		hosts = append(hosts, simfleet.Host{Name: h.name, System: h.system, Disk: h.disk, HostKey: signer})
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	client, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	fleet, err := simfleet.Start(simfleet.Options{
		Hosts: hosts, ClientKey: client.PublicKey(), Pace: pace, FailRebuild: []string{"rk1-node2"}, FailChecks: []string{"rk1-node4"},
		HangAfterSwitch: []string{demoHang}, OnHang: board.hung,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("demo: %w", err)
	}
	return fleet, client, nil
}

// demoConfig is the fleet config of the demo: the example fleet's hosts,
// policy and nightly schedule, at the simulated fleet's addresses.
func demoConfig(f *simfleet.Fleet, board *demoBoard) string {
	var b strings.Builder
	r := f.Runner()
	fmt.Fprintf(&b, `# Written by nixdeploy demo: the example fleet, simulated on loopback.
flake = "/home/michael/dots/nix"
installer_flake = "/home/michael/dots/nix/nixos-installer"

[runner]
address = "%s@%s"
host_key = %q

[keys]
dir = "keys"

[slack]
channel = %q
deployers = [%q, %q]
approvers = [%q, %q]
oncall = [%q]
destructive = true
approval_ttl = "15m"
`, f.RunnerUser(), r.Addr(), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.HostKey))),
		demoChannel, demoAlice, demoBob, demoAlice, demoBob, demoAlice)
	for _, h := range demoHosts {
		e, _ := f.Host(h.name)
		fmt.Fprintf(&b, "\n[[hosts]]\nname = %q\naddress = %q\nport = %d\nsystem = %q\ntags = [%q]\ndisk = %q\n", h.name, e.IP, e.Port, h.system, h.tag, h.disk)
		if h.system == nixdeploy.SystemAarch64 {
			b.WriteString("build_on_target = true\n" + board.hostConfig(h.name))
		} else {
			b.WriteString("disk_key = \"/tmp/secret.key\"\n")
		}
	}
	b.WriteString(`
[[schedules]]
name = "nightly-rk1"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
hosts = ["@rk1"]
action = "switch"
strategy = "rolling"
recover = "power-reset"
`)
	b.WriteString(board.config())
	return b.String()
}

func printDemoBanner(w io.Writer, f *simfleet.Fleet, dir string, interactive bool) {
	var b strings.Builder
	b.WriteString("nixdeploy demo: the real bot, deployer, schedules and database, with this terminal as the\n" +
		"Slack channel and a simulated fleet: in-process SSH servers on loopback that present the\n" +
		"fleet's pinned host keys. Nothing leaves this machine.\n\n")
	r := f.Runner()
	fmt.Fprintf(&b, "  %-10s %-24s runs nixos-anywhere and nixos-rebuild\n", "runner", f.RunnerUser()+"@"+r.Addr())
	for _, h := range demoHosts {
		e, _ := f.Host(h.name)
		note := ""
		switch h.name {
		case "rk1-node2":
			note = "  (its configuration is broken)"
		case "rk1-node4":
			note = "  (its node exporter fails its health check)"
		}
		fmt.Fprintf(&b, "  %-10s %-24s %-14s %s%s\n", h.name, e.Addr(), h.system, h.disk, note)
	}
	fmt.Fprintf(&b, "\nYou are @%s in %s; @%s is the other approver. Files: %s\n", demoAlice, demoChannel, demoBob, dir)
	if interactive {
		b.WriteString(`
Try, in this order:
  1. /nixdeploy rk1-node3                  a switch, streamed into one message
  2. /nixdeploy install ganon               an install waits for an approval
     :white_check_mark:                     your own approval does not count
  3. :white_check_mark: as BOB              BOB approves: the install runs, phase by phase
  4. /nixdeploy schedule run nightly-rk1    the rolling nightly rebuild: rk1-node1 hangs and is reset
                                           through the BMC, then the run halts at rk1-node2
  5. /nixdeploy status                      the drift board: rk1-node4 drifted, rk1-node2 unknown
  6. /nixdeploy schedule run canary-rk1     the canary rk1-node4 fails its check, its guard rolls
                                           it back, and no other node is touched
Also: /nixdeploy history, /nixdeploy help, quit.
`)
	}
	b.WriteString("\n")
	io.WriteString(w, b.String())
}

// demoSession reads the demo's lines and hands them to the bot, as
// nixdeploy console does, and waits after each until nothing runs, a
// scheduled run included.
type demoSession struct {
	b      *bot.Bot
	term   *bot.Terminal
	out    io.Writer
	deps   *botDeps
	user   string
	prompt bool
}

func (d *demoSession) run(ctx context.Context, in io.Reader) error {
	lines, readErr := bot.ReadLines(ctx, in)
	for {
		if d.prompt {
			fmt.Fprintf(d.out, "%s> ", d.user)
		}
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			if err := <-readErr; err != nil {
				return fmt.Errorf("read demo lines: %w", err)
			}
			return d.settle(ctx)
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case line == "quit" || line == "exit":
			return d.settle(ctx)
		case line == "wait":
		case line == "echo" || strings.HasPrefix(line, "echo "):
			fmt.Fprintf(d.out, "\n%s\n", strings.TrimPrefix(strings.TrimPrefix(line, "echo"), " "))
			continue
		case strings.HasPrefix(line, "as "):
			d.user = strings.TrimSpace(strings.TrimPrefix(line, "as "))
			fmt.Fprintf(d.out, "> now acting as @%s\n", d.user)
			continue
		default:
			// One line at a time through the console's own handling, so
			// the syntax and the output are exactly those of console.
			if err := bot.Console(ctx, d.b, d.term, strings.NewReader(line+"\n"), d.out, d.user, demoChannel); err != nil {
				return err
			}
		}
		if err := d.settle(ctx); err != nil {
			return err
		}
	}
}

// settle waits until the bot and the scheduler are idle: a scheduled run
// is idle for the bot between two of its hosts.
func (d *demoSession) settle(ctx context.Context) error {
	if err := d.b.Wait(ctx); err != nil {
		return err
	}
	if s := d.deps.scheduler; s != nil {
		done := make(chan struct{})
		go func() {
			s.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return d.b.Wait(ctx)
}

// demoChat is the terminal chat, except that an uploaded log is printed
// in full, as the thread in Slack would show it.
type demoChat struct {
	*bot.Terminal
	w io.Writer
}

func (c demoChat) Upload(ctx context.Context, channel, threadTS string, f bot.File) error {
	r, err := f.Open(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "[%s %s thread] file %s (%s)\n", channel, threadTS, f.Name, plural(int(f.Lines), "line"))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		// "2026-06-12T10:00:01.123Z host step stream: text": the date is
		// noise in a demo.
		if len(l) > 11 && l[10] == 'T' {
			l = l[11:]
		}
		b.WriteString("  | " + l + "\n")
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", f.Name, err)
	}
	_, err = io.WriteString(c.w, b.String())
	return err
}

// lockedWriter makes each Write atomic, so the terminal chat and the demo
// never interleave within a line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// demoCanaryConfig adds the canary night to the demo's config: health
// checks for the RK1 nodes, the guard's window and a canary schedule
// whose canary, rk1-node4, fails its check. The window is a few dozen
// paces (at least 3s), long enough for a guarded switch of the simulated
// fleet to be checked and disarmed, short enough to watch the rollback.
func demoCanaryConfig(pace time.Duration) string {
	window := max(30*pace, 3*time.Second).Round(time.Second)
	return fmt.Sprintf(`
[guard]
window = %q

[[health_checks]]
hosts = ["@rk1"]
units = ["prometheus-node-exporter.service"]
timeout = "30s"

[[schedules]]
name = "canary-rk1"
cron = "30 3 * * *"
timezone = "Europe/Berlin"
hosts = ["@rk1"]
action = "switch"
strategy = "canary"
canary = "rk1-node4"
`, window.String())
}
